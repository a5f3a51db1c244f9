-- fn_mot_graph_emit: the MOT planner. Turns a stored template into one job_workflow row and one
-- job per step, in the caller's transaction: roots queued, every other step waiting (released
-- by fn_job_workflow__step_end when its parents end). It plans and never executes: no handler
-- runs here, and every step is an ordinary job (leases, fencing, retries, DLQ, replay).
--
-- version NULL means the latest version. Each step's payload is the template's payload with
-- params merged over it (top-level keys; params win), checked against the payload limits of
-- fn_job_enqueue. A step's queue is the template's, else 'operator' for operator steps (so no
-- worker of the default queue claims a step meant for a person), else 'default'. Job ids are
-- drawn from job_queue's sequence before the insert, so jobs and step rows are written by one
-- statement each, whatever the size of the graph. dry_run answers the graph it would create and
-- writes nothing. An idempotency_key emits once: a repeat (also one racing this call) answers
-- the first workflow with "already": true.
CREATE OR REPLACE FUNCTION conveyor.fn_mot_graph_emit(
    template        text,
    version         integer DEFAULT NULL,
    params          jsonb   DEFAULT '{}',
    idempotency_key text    DEFAULT NULL,
    dry_run         boolean DEFAULT false,
    created_by      text    DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_params  jsonb := coalesce(fn_mot_graph_emit.params, '{}');
    v_tpl     record;
    v_problem record;
    v_wf      bigint;
    v_steps   integer;
    v_roots   integer;
    v_children jsonb;
BEGIN
    IF NOT fn_config_enabled('workflow.mot.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'mot_disabled',
                                  'flag', 'workflow.mot.enabled');
    END IF;
    IF NOT fn_config_enabled('queue.job_substrate.enabled') THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'job_substrate_disabled',
                                  'flag', 'queue.job_substrate.enabled');
    END IF;
    IF fn_mot_graph_emit.template IS NULL THEN
        RAISE EXCEPTION 'fn_mot_graph_emit: template is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a template stored with fn_mot_template_register (see mot_template).';
    END IF;
    IF jsonb_typeof(v_params) <> 'object' THEN
        RAISE EXCEPTION 'fn_mot_graph_emit: params must be a JSON object, not %', jsonb_typeof(v_params)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass params => ''{"record_id": 42}'' (merged over each step''s payload).';
    END IF;
    IF octet_length(fn_mot_graph_emit.idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'fn_mot_graph_emit: idempotency_key must be 1 to 255 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for no key.';
    END IF;

    SELECT mt.name, mt.version, mt.steps INTO v_tpl
      FROM mot_template AS mt
     WHERE mt.name = fn_mot_graph_emit.template
       AND (fn_mot_graph_emit.version IS NULL OR mt.version = fn_mot_graph_emit.version)
     ORDER BY mt.version DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'not_found',
                                  'template', fn_mot_graph_emit.template,
                                  'version', fn_mot_graph_emit.version);
    END IF;

    -- The template's payloads passed the limits when it was stored; params can push one over.
    IF v_params <> '{}' THEN
        SELECT s.step ->> 'key' AS step, p.problem INTO v_problem
          FROM jsonb_array_elements(v_tpl.steps) AS s(step),
               LATERAL (SELECT fn_job__enqueue_problem(
                           s.step ->> 'kind', coalesce(s.step -> 'payload', '{}') || v_params, NULL, NULL,
                           NULL, NULL, NULL,
                           fn_job__config_number('queue.payload.max_bytes', 262144)::integer,
                           fn_job__config_number('queue.payload.max_depth', 32)::integer) AS problem) AS p
         WHERE p.problem IS NOT NULL
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'fn_mot_graph_emit: step %: with params applied, % %',
                            v_problem.step, v_problem.problem[1], v_problem.problem[2]
                USING ERRCODE = 'invalid_parameter_value', HINT = v_problem.problem[3];
        END IF;
    END IF;

    IF fn_mot_graph_emit.dry_run THEN
        RETURN jsonb_build_object(
            'ok', true, 'dry_run', true, 'template', v_tpl.name, 'version', v_tpl.version,
            'steps', (SELECT jsonb_agg(jsonb_build_object(
                                 'key', s.step ->> 'key',
                                 'kind', s.step ->> 'kind',
                                 'executor', s.step ->> 'executor',
                                 'parents', coalesce(s.step -> 'parents', '[]'),
                                 'status', CASE WHEN jsonb_array_length(coalesce(s.step -> 'parents', '[]')) = 0
                                                THEN 'queued' ELSE 'waiting' END,
                                 'queue', coalesce(s.step ->> 'queue',
                                                   CASE WHEN s.step ->> 'executor' = 'operator' THEN 'operator'
                                                        ELSE 'default' END),
                                 'on_failure', coalesce(s.step ->> 'on_failure', 'fail_workflow'),
                                 'payload', coalesce(s.step -> 'payload', '{}') || v_params)
                             ORDER BY s.ord)
                        FROM jsonb_array_elements(v_tpl.steps) WITH ORDINALITY AS s(step, ord)));
    END IF;

    v_steps := jsonb_array_length(v_tpl.steps);
    INSERT INTO job_workflow AS jw (template, template_version, params, status, idempotency_key,
                                    steps_total, steps_open, created_by)
    VALUES (v_tpl.name, v_tpl.version, v_params, 'active', fn_mot_graph_emit.idempotency_key,
            v_steps, v_steps, coalesce(nullif(fn_mot_graph_emit.created_by, ''), session_user))
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING jw.id INTO v_wf;
    IF v_wf IS NULL THEN
        SELECT jw.id INTO v_wf FROM job_workflow AS jw WHERE jw.idempotency_key = fn_mot_graph_emit.idempotency_key;
        RETURN jsonb_build_object('ok', true, 'workflow_id', v_wf, 'already', true,
                                  'idempotency_key', fn_mot_graph_emit.idempotency_key);
    END IF;

    -- Each step's children, as a jsonb object keyed by step (a lookup is a binary search; a join
    -- against the materialized steps would be estimated blind and can go quadratic).
    -- The key is a column of its own (jsonb_to_recordset), so the rows the aggregate hashes do
    -- not carry the whole step: a 10,000-parent join step in each of its 10,000 rows spilled
    -- 780 MB to disk.
    SELECT coalesce(jsonb_object_agg(c.parent, to_jsonb(c.keys)), '{}') INTO v_children
      FROM (SELECT p.parent, array_agg(e.key) AS keys
              FROM jsonb_to_recordset(v_tpl.steps) AS e(key text, parents jsonb),
                   jsonb_array_elements_text(coalesce(e.parents, '[]')) AS p(parent)
             GROUP BY p.parent) AS c;

    WITH s AS MATERIALIZED (
        SELECT e.ord, e.step, coalesce(e.step -> 'parents', '[]') AS parents,
               nextval('conveyor.job_queue_id_seq') AS job_id
          FROM jsonb_array_elements(v_tpl.steps) WITH ORDINALITY AS e(step, ord)
    ), jobs AS (
        INSERT INTO job_queue (id, queue, kind, payload, priority, status, max_attempts, workflow_id)
        OVERRIDING SYSTEM VALUE
        SELECT s.job_id,
               coalesce(s.step ->> 'queue',
                        CASE WHEN s.step ->> 'executor' = 'operator' THEN 'operator' ELSE 'default' END),
               s.step ->> 'kind',
               coalesce(s.step -> 'payload', '{}') || v_params,
               coalesce((s.step ->> 'priority')::smallint, 0),
               CASE WHEN jsonb_array_length(s.parents) = 0 THEN 'queued' ELSE 'waiting' END,
               (s.step ->> 'max_attempts')::integer,
               v_wf
          FROM s
         ORDER BY s.ord
        RETURNING 1
    )
    INSERT INTO job_workflow_step (workflow_id, step_key, ord, job_id, kind, executor, parents,
                                   children, pending_parents, on_failure, timeout_seconds)
    SELECT v_wf, s.step ->> 'key', s.ord, s.job_id, s.step ->> 'kind', s.step ->> 'executor',
           ARRAY(SELECT jsonb_array_elements_text(s.parents)),
           ARRAY(SELECT jsonb_array_elements_text(coalesce(v_children -> (s.step ->> 'key'), '[]'))),
           jsonb_array_length(s.parents), coalesce(s.step ->> 'on_failure', 'fail_workflow'),
           (s.step ->> 'timeout_seconds')::integer
      FROM s;

    SELECT count(*) INTO v_roots
      FROM jsonb_array_elements(v_tpl.steps) AS e(step)
     WHERE jsonb_array_length(coalesce(e.step -> 'parents', '[]')) = 0;
    RETURN jsonb_build_object('ok', true, 'workflow_id', v_wf, 'template', v_tpl.name,
                              'version', v_tpl.version, 'steps', v_steps, 'queued', v_roots);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text) TO conveyor_worker, conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_mot_graph_emit(text, integer, jsonb, text, boolean, text) IS
    'Emit MOT template (latest version unless version) as one job_workflow and one job per step, in one transaction: roots queued, the rest waiting. params are merged over each step''s payload. → {"ok":true,"workflow_id","template","version","steps":n,"queued":roots}; dry_run → {"ok":true,"dry_run":true,"template","version","steps":[{key,kind,executor,parents,status,queue,on_failure,payload}]} and nothing written; a repeated idempotency_key → {"ok":true,"workflow_id","already":true,"idempotency_key"}; unknown template → {"refused":true,"reason":"not_found","template","version"}. Refuses mot_disabled while workflow.mot.enabled is false (and job_substrate_disabled). Example: SELECT conveyor.fn_mot_graph_emit(''staging.cut_pipeline'', params => ''{"record_id": 42}'');';
