-- fn_mot__template_problem: the one place that knows what a valid MOT template is. Returns NULL
-- for valid steps, else ARRAY[step, what is wrong, hint] where step names the offending step
-- (its key, or #n for an element without a usable key). Checked: steps is a non-empty array of
-- at most 20,000 objects; each has only known fields; key (^[a-z0-9][a-z0-9_.-]{0,62}$, unique),
-- kind, executor (a row of executor_kind and never mot: MOT plans, it never executes), parents
-- (keys of other steps, no repeats), on_failure (fail_workflow | continue | skip_dependents),
-- and the optional payload, queue, priority and max_attempts checked by the same rules as
-- fn_job_enqueue (fn_job__enqueue_problem), timeout_seconds 1..604800; and the graph has no
-- cycle. The cycle check peels roots off in rounds (Kahn) with the done keys in a jsonb object,
-- whose key lookup is a binary search: a 10,000-wide fan-out or fan-in takes two rounds.
-- Pure checks: writes nothing. Private (no EXECUTE grant): callers are fn_mot__template_validate
-- and fn_mot_template_register.
CREATE OR REPLACE FUNCTION conveyor.fn_mot__template_problem(
    steps jsonb
) RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_fields   CONSTANT text[] := ARRAY['key', 'kind', 'executor', 'parents', 'on_failure', 'payload',
                                        'queue', 'priority', 'max_attempts', 'timeout_seconds'];
    v_step     jsonb;
    v_ord      bigint;
    v_name     text;
    v_keys     jsonb := '{}';
    v_problem  text[];
    v_field    text;
    v_parent   text;
    v_done     jsonb := '{}';
    v_round    jsonb;
    v_left     text;
    v_left_steps jsonb;
BEGIN
    IF fn_mot__template_problem.steps IS NULL OR jsonb_typeof(fn_mot__template_problem.steps) <> 'array'
       OR jsonb_array_length(fn_mot__template_problem.steps) = 0 THEN
        RETURN ARRAY['(steps)', 'must be a non-empty JSON array of step objects',
                     'Pass steps => ''[{"key": "a", "kind": "demo.echo", "executor": "dot"}]''.'];
    END IF;
    IF jsonb_array_length(fn_mot__template_problem.steps) > 20000 THEN
        RETURN ARRAY['(steps)', format('has %s steps; at most 20000 are allowed',
                                       jsonb_array_length(fn_mot__template_problem.steps)),
                     'Split the work into several templates.'];
    END IF;

    FOR v_step, v_ord IN
        SELECT e.step, e.ord FROM jsonb_array_elements(fn_mot__template_problem.steps) WITH ORDINALITY AS e(step, ord)
    LOOP
        v_name := '#' || v_ord;
        IF jsonb_typeof(v_step) <> 'object' THEN
            RETURN ARRAY[v_name, 'is not a JSON object', 'Each step is an object with key, kind and executor.'];
        END IF;
        IF jsonb_typeof(v_step -> 'key') IS DISTINCT FROM 'string'
           OR (v_step ->> 'key') !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
            RETURN ARRAY[v_name, format('key %s is not a step key', coalesce(v_step ->> 'key', '(missing)')),
                         'A key is 1..63 of a-z 0-9 _ . - starting with a letter or digit.'];
        END IF;
        v_name := v_step ->> 'key';
        IF v_keys ? v_name THEN
            RETURN ARRAY[v_name, 'is a duplicate key (two steps have it)', 'Give every step its own key.'];
        END IF;
        v_keys := v_keys || jsonb_build_object(v_name, true);
        SELECT f INTO v_field FROM jsonb_object_keys(v_step) AS f WHERE f <> ALL (v_fields) ORDER BY f LIMIT 1;
        IF v_field IS NOT NULL THEN
            RETURN ARRAY[v_name, format('has an unknown field %s', v_field),
                         'Known fields: ' || array_to_string(v_fields, ', ') || '.'];
        END IF;
        IF jsonb_typeof(v_step -> 'executor') IS DISTINCT FROM 'string' THEN
            RETURN ARRAY[v_name, 'has no executor', 'Name one of executor_kind: agent, codex, dot, external_worker, operator.'];
        END IF;
        IF lower(v_step ->> 'executor') = 'mot' THEN
            RETURN ARRAY[v_name, 'names mot as its executor; MOT plans workflows and never executes a step',
                         'Name one of executor_kind: agent, codex, dot, external_worker, operator.'];
        END IF;
        IF NOT EXISTS (SELECT 1 FROM executor_kind AS ek WHERE ek.executor = v_step ->> 'executor') THEN
            RETURN ARRAY[v_name, format('executor %s is not an executor', left(v_step ->> 'executor', 64)),
                         'Name one of executor_kind: agent, codex, dot, external_worker, operator.'];
        END IF;
        IF jsonb_typeof(v_step -> 'kind') IS DISTINCT FROM 'string' THEN
            RETURN ARRAY[v_name, 'has no kind', 'Name the job kind the step runs, e.g. "staging.cut".'];
        END IF;
        IF v_step ? 'payload' AND jsonb_typeof(v_step -> 'payload') <> 'object' THEN
            RETURN ARRAY[v_name, 'payload is not a JSON object', 'Give the step''s payload as an object (or leave it out).'];
        END IF;
        IF (v_step ? 'queue' AND jsonb_typeof(v_step -> 'queue') <> 'string')
           OR (v_step ? 'priority' AND jsonb_typeof(v_step -> 'priority') <> 'number')
           OR (v_step ? 'max_attempts' AND jsonb_typeof(v_step -> 'max_attempts') <> 'number') THEN
            RETURN ARRAY[v_name, 'queue must be a string, priority and max_attempts numbers',
                         'Leave a field out to use the queue''s default.'];
        END IF;
        v_problem := fn_job__enqueue_problem(
            v_step ->> 'kind', coalesce(v_step -> 'payload', '{}'), v_step ->> 'queue',
            (v_step ->> 'priority')::numeric, NULL, NULL, (v_step ->> 'max_attempts')::numeric,
            fn_job__config_number('queue.payload.max_bytes', 262144)::integer,
            fn_job__config_number('queue.payload.max_depth', 32)::integer);
        IF v_problem IS NOT NULL THEN
            RETURN ARRAY[v_name, v_problem[1] || ' ' || v_problem[2], v_problem[3]];
        END IF;
        IF v_step ? 'timeout_seconds' AND (jsonb_typeof(v_step -> 'timeout_seconds') <> 'number'
           OR (v_step ->> 'timeout_seconds')::numeric NOT BETWEEN 1 AND 604800
           OR (v_step ->> 'timeout_seconds')::numeric <> trunc((v_step ->> 'timeout_seconds')::numeric)) THEN
            RETURN ARRAY[v_name, format('timeout_seconds %s must be a whole number from 1 to 604800', v_step -> 'timeout_seconds'),
                         'Leave it out for no step timeout.'];
        END IF;
        IF coalesce(v_step ->> 'on_failure', 'fail_workflow') NOT IN ('fail_workflow', 'continue', 'skip_dependents')
           OR (v_step ? 'on_failure' AND jsonb_typeof(v_step -> 'on_failure') <> 'string') THEN
            RETURN ARRAY[v_name, format('on_failure %s is not a failure policy', v_step -> 'on_failure'),
                         'Use fail_workflow (the default), continue or skip_dependents.'];
        END IF;
        IF v_step ? 'parents' AND (jsonb_typeof(v_step -> 'parents') <> 'array'
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_step -> 'parents') AS p WHERE jsonb_typeof(p) <> 'string')) THEN
            RETURN ARRAY[v_name, 'parents must be an array of step keys', 'Write "parents": ["a", "b"] (or leave it out for a root).'];
        END IF;
        SELECT p INTO v_parent FROM jsonb_array_elements_text(coalesce(v_step -> 'parents', '[]')) AS p
         GROUP BY p HAVING count(*) > 1 LIMIT 1;
        IF v_parent IS NOT NULL THEN
            RETURN ARRAY[v_name, format('names parent %s twice', v_parent), 'List each parent once.'];
        END IF;
    END LOOP;

    -- Parents must be steps of the template (checked once every key is known).
    SELECT s.step ->> 'key', p INTO v_name, v_parent
      FROM jsonb_array_elements(fn_mot__template_problem.steps) AS s(step),
           jsonb_array_elements_text(coalesce(s.step -> 'parents', '[]')) AS p
     WHERE NOT v_keys ? p OR p = s.step ->> 'key'
     LIMIT 1;
    IF v_parent IS NOT NULL THEN
        RETURN ARRAY[v_name, CASE WHEN v_parent = v_name THEN 'names itself as a parent'
                                  ELSE format('parent %s is not a step of the template', v_parent) END,
                     'Every parent must be the key of another step.'];
    END IF;

    -- No cycle: peel off, round by round, the steps whose parents are all done.
    LOOP
        SELECT coalesce(jsonb_object_agg(s.step ->> 'key', true), '{}') INTO v_round
          FROM jsonb_array_elements(fn_mot__template_problem.steps) AS s(step)
         WHERE NOT v_done ? (s.step ->> 'key')
           AND v_done ?& ARRAY(SELECT jsonb_array_elements_text(coalesce(s.step -> 'parents', '[]')));
        EXIT WHEN v_round = '{}';
        v_done := v_done || v_round;
    END LOOP;
    IF (SELECT count(*) FROM jsonb_object_keys(v_done)) < jsonb_array_length(fn_mot__template_problem.steps) THEN
        -- Steps left over lie on a cycle or downstream of one; peel off those no leftover step
        -- waits on, so the step named is on the cycle itself.
        SELECT jsonb_object_agg(s.step ->> 'key', coalesce(s.step -> 'parents', '[]')) INTO v_left_steps
          FROM jsonb_array_elements(fn_mot__template_problem.steps) AS s(step)
         WHERE NOT v_done ? (s.step ->> 'key');
        LOOP
            SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}') INTO v_round
              FROM jsonb_each(v_left_steps) AS l
             WHERE EXISTS (SELECT 1 FROM jsonb_each(v_left_steps) AS o WHERE o.value ? l.key);
            EXIT WHEN v_round = v_left_steps;
            v_left_steps := v_round;
        END LOOP;
        SELECT s.step ->> 'key' INTO v_left
          FROM jsonb_array_elements(fn_mot__template_problem.steps) WITH ORDINALITY AS s(step, ord)
         WHERE v_left_steps ? (s.step ->> 'key')
         ORDER BY s.ord LIMIT 1;
        RETURN ARRAY[v_left, 'is on a cycle (through its parents it waits on itself)',
                     'A workflow is a DAG: remove a parents entry so no step waits on itself.'];
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_mot__template_problem(jsonb) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_mot__template_problem(jsonb) IS
    'Private: NULL for valid MOT template steps, else ARRAY[step, problem, hint] naming the step (keys, executors, parents, policies, cycle).';
