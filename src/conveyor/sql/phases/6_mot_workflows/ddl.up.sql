-- Phase 6 — MOT workflows (ROADMAP §8): versioned templates (mot_template) that the MOT planner
-- (fn_mot_graph_emit) turns into a job_workflow and one ordinary job per step; release of a step
-- in the transaction that ends its last parent; failure policies; operator steps; the workflow
-- tick (fn_job_workflow_refresh); v_job_workflow_health. Needs phase 4 (executor_kind) and so
-- phases 3, 1 and 0. event_outbox and iu_core.iu_staging_* are not touched.
--
-- MOT is a planner and never an executor: executor_kind gets a CHECK refusing mot (so
-- job_subscription.executor and consumer_registry.job_executor, which reference it, can never
-- hold it), job_workflow_step.executor has its own CHECK, and mot_template.steps a CHECK that no
-- step's executor is mot.
--
-- Release without a cost to plain jobs: phase 1-4's functions are not replaced. Two AFTER ROW
-- triggers on job_queue whose WHEN clauses test workflow_id IS NOT NULL (evaluated before any
-- trigger event is queued) call fn_job_workflow__job_ended for workflow steps only: status
-- becoming succeeded or cancelled, and the DELETE of an in_progress row (dead-lettered). One
-- trigger on job_dead_letter, WHEN the dead letter is a workflow step's and was just replayed,
-- resumes the workflow. A trigger catches every path (complete, complete_many, cancel,
-- cancel_ack, reaper, fail_permanent, fail_transient exhausting) without a new version of each.
-- Every bookkeeping step locks the workflow row first (see fn_job_workflow__step_end).

-- ---------------------------------------------------------------------------------------------
-- executor_kind: mot is never an executor.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE conveyor.executor_kind
    ADD CONSTRAINT executor_kind_not_mot_check CHECK (lower(executor) <> 'mot');
COMMENT ON CONSTRAINT executor_kind_not_mot_check ON conveyor.executor_kind IS
    'Phase 6: MOT plans workflows and never executes a job, so mot is no executor (and so in no column referencing executor_kind)';

-- ---------------------------------------------------------------------------------------------
-- mot_template: versioned workflow templates; a version never changes.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.mot_template (
    name        text        NOT NULL,
    version     integer     NOT NULL,
    steps       jsonb       NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL DEFAULT current_user,
    CONSTRAINT mot_template_pkey PRIMARY KEY (name, version),
    CONSTRAINT mot_template_name_check CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,127}$'),
    CONSTRAINT mot_template_version_check CHECK (version >= 1),
    CONSTRAINT mot_template_executor_check
        CHECK (NOT jsonb_path_exists(steps, '$[*].executor ? (@ like_regex "^mot$" flag "i")'))
);
COMMENT ON TABLE conveyor.mot_template IS
    'MOT workflow templates (phase 6), one row per version; steps is validated on insert (fn_mot__template_guard) and immutable. Write with fn_mot_template_register';
COMMENT ON COLUMN conveyor.mot_template.steps IS
    'JSON array of steps: {"key", "kind", "executor", "parents": [keys], "on_failure": fail_workflow|continue|skip_dependents, "payload": {}, "queue", "priority", "max_attempts", "timeout_seconds"}';
COMMENT ON CONSTRAINT mot_template_executor_check ON conveyor.mot_template IS
    'No step of a template has mot as its executor';

-- ---------------------------------------------------------------------------------------------
-- job_workflow: one emitted workflow.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_workflow (
    id               bigint      GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME conveyor.job_workflow_id_seq)
                                 CONSTRAINT job_workflow_pkey PRIMARY KEY,
    template         text        NOT NULL,
    template_version integer     NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL
                                 CONSTRAINT job_workflow_status_check
                                 CHECK (status IN ('active', 'succeeded', 'failed', 'cancelled')),
    idempotency_key  text        CONSTRAINT job_workflow_idempotency_key_check
                                 CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255),
    steps_total      integer     NOT NULL,
    steps_open       integer     NOT NULL CONSTRAINT job_workflow_steps_open_check CHECK (steps_open >= 0),
    failed_step      text,
    cancel_reason    text,
    cancelled_by     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text        NOT NULL DEFAULT current_user,
    finished_at      timestamptz,
    CONSTRAINT job_workflow_template_fkey FOREIGN KEY (template, template_version)
        REFERENCES conveyor.mot_template (name, version)
);
CREATE UNIQUE INDEX job_workflow_idempotency_key_idx ON conveyor.job_workflow (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
COMMENT ON INDEX conveyor.job_workflow_idempotency_key_idx IS
    'One workflow per idempotency key, ever; fn_mot_graph_emit''s ON CONFLICT arbiter.';
CREATE INDEX job_workflow_open_idx ON conveyor.job_workflow (status, id) WHERE steps_open > 0 OR status = 'active';
COMMENT ON INDEX conveyor.job_workflow_open_idx IS
    'Workflows with open steps or still active (health view, refresh).';
COMMENT ON TABLE conveyor.job_workflow IS
    'Workflows emitted by fn_mot_graph_emit (phase 6): active → succeeded | failed | cancelled (a replayed dead letter may make a failed one active again). Write only through the fn_mot_* / fn_job_workflow_* functions';
COMMENT ON COLUMN conveyor.job_workflow.params IS 'params given to fn_mot_graph_emit (merged over each step''s payload; may hold personal data: no view exposes it)';
COMMENT ON COLUMN conveyor.job_workflow.steps_open IS 'Steps without an outcome yet; 0 settles an active workflow as succeeded';
COMMENT ON COLUMN conveyor.job_workflow.failed_step IS 'The step whose failure (policy fail_workflow) failed the workflow';

-- ---------------------------------------------------------------------------------------------
-- job_workflow_step: one step of a workflow and its current job.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_workflow_step (
    workflow_id        bigint      NOT NULL,
    step_key           text        NOT NULL,
    ord                integer     NOT NULL,
    job_id             bigint      NOT NULL,
    kind               text        NOT NULL,
    executor           text        NOT NULL,
    parents            text[]      NOT NULL,
    children           text[]      NOT NULL,
    pending_parents    integer     NOT NULL CONSTRAINT job_workflow_step_pending_parents_check CHECK (pending_parents >= 0),
    children_satisfied boolean     NOT NULL DEFAULT false,
    on_failure         text        NOT NULL
                                   CONSTRAINT job_workflow_step_on_failure_check
                                   CHECK (on_failure IN ('fail_workflow', 'continue', 'skip_dependents')),
    timeout_seconds    integer,
    outcome            text        CONSTRAINT job_workflow_step_outcome_check
                                   CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'skipped')),
    finished_at        timestamptz,
    completed_by       text,
    completed_at       timestamptz,
    CONSTRAINT job_workflow_step_pkey PRIMARY KEY (workflow_id, step_key),
    CONSTRAINT job_workflow_step_workflow_fkey FOREIGN KEY (workflow_id) REFERENCES conveyor.job_workflow (id),
    CONSTRAINT job_workflow_step_executor_fkey FOREIGN KEY (executor) REFERENCES conveyor.executor_kind (executor),
    CONSTRAINT job_workflow_step_executor_check CHECK (lower(executor) <> 'mot')
)
WITH (fillfactor = 80);
CREATE UNIQUE INDEX job_workflow_step_job_idx ON conveyor.job_workflow_step (job_id);
COMMENT ON INDEX conveyor.job_workflow_step_job_idx IS 'The step of a job (every step end looks it up).';
CREATE INDEX job_workflow_step_open_idx ON conveyor.job_workflow_step (workflow_id)
    WHERE outcome IS NULL;
COMMENT ON INDEX conveyor.job_workflow_step_open_idx IS 'Open steps per workflow (hold, cancel, settle).';
CREATE INDEX job_workflow_step_ready_idx ON conveyor.job_workflow_step (job_id)
    WHERE outcome IS NULL AND pending_parents = 0;
COMMENT ON INDEX conveyor.job_workflow_step_ready_idx IS 'Open steps with no parent pending (refresh''s release).';
CREATE INDEX job_workflow_step_timeout_idx ON conveyor.job_workflow_step (job_id)
    WHERE outcome IS NULL AND timeout_seconds IS NOT NULL;
COMMENT ON INDEX conveyor.job_workflow_step_timeout_idx IS 'Open steps with a timeout (refresh''s timeouts).';
COMMENT ON TABLE conveyor.job_workflow_step IS
    'Steps of emitted workflows (phase 6): the step''s current job (a replay moves it to the new job), its parents and children, how many parents are still pending, its failure policy and its outcome';
COMMENT ON COLUMN conveyor.job_workflow_step.pending_parents IS
    'Parents that have not yet ended in a way this step may go on from; 0 releases it (waiting → queued)';
COMMENT ON COLUMN conveyor.job_workflow_step.children_satisfied IS
    'The step''s children have been counted (so a replayed continue step does not count them twice)';
COMMENT ON COLUMN conveyor.job_workflow_step.outcome IS
    'NULL while open (state = its job''s status); succeeded, failed (dead-lettered), cancelled, skipped (upstream skip_dependents)';
COMMENT ON COLUMN conveyor.job_workflow_step.completed_by IS 'Operator steps: who completed it (fn_job_workflow_complete_step)';

GRANT ALL ON TABLE conveyor.mot_template, conveyor.job_workflow, conveyor.job_workflow_step TO conveyor_admin;

-- ---------------------------------------------------------------------------------------------
-- Functions: private helpers first, then the public API.
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_mot__template_problem.6.sql
\ir ../../functions/fn_mot__template_guard.6.sql
\ir ../../functions/fn_job_workflow__satisfy.6.sql
\ir ../../functions/fn_job_workflow__step_end.6.sql
\ir ../../functions/fn_job_workflow__job_ended.6.sql
\ir ../../functions/fn_job_workflow__step_replayed.6.sql
\ir ../../functions/fn_mot_template_register.6.sql
\ir ../../functions/fn_mot_graph_emit.6.sql
\ir ../../functions/fn_job_workflow_cancel.6.sql
\ir ../../functions/fn_job_workflow_complete_step.6.sql
\ir ../../functions/fn_job_workflow_refresh.6.sql
\ir ../../functions/fn_job_workflow_parents.6.sql

CREATE TRIGGER mot_template_guard_trg
    BEFORE INSERT OR UPDATE ON conveyor.mot_template
    FOR EACH ROW
    EXECUTE FUNCTION conveyor.fn_mot__template_guard();
COMMENT ON TRIGGER mot_template_guard_trg ON conveyor.mot_template IS
    'Phase 6: every template is validated (fn_mot__template_problem), also rows written directly; a version''s steps never change';

CREATE TRIGGER job_queue_workflow_step_ended_trg
    AFTER UPDATE OF status ON conveyor.job_queue
    FOR EACH ROW
    WHEN (NEW.workflow_id IS NOT NULL AND NEW.status IN ('succeeded', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION conveyor.fn_job_workflow__job_ended();
COMMENT ON TRIGGER job_queue_workflow_step_ended_trg ON conveyor.job_queue IS
    'Phase 6: a workflow step''s job succeeded or was cancelled → release children / apply the failure policy (plain jobs: WHEN is false, nothing runs)';

CREATE TRIGGER job_queue_workflow_step_dead_lettered_trg
    AFTER DELETE ON conveyor.job_queue
    FOR EACH ROW
    WHEN (OLD.workflow_id IS NOT NULL AND OLD.status = 'in_progress')
    EXECUTE FUNCTION conveyor.fn_job_workflow__job_ended();
COMMENT ON TRIGGER job_queue_workflow_step_dead_lettered_trg ON conveyor.job_queue IS
    'Phase 6: a running workflow step''s job left for job_dead_letter → apply the failure policy (plain jobs and pruning: WHEN is false)';

CREATE TRIGGER job_dead_letter_workflow_replay_trg
    AFTER UPDATE OF replayed_job_id ON conveyor.job_dead_letter
    FOR EACH ROW
    WHEN (NEW.replayed_job_id IS NOT NULL AND OLD.replayed_job_id IS NULL
          AND (NEW.job ->> 'workflow_id') IS NOT NULL)
    EXECUTE FUNCTION conveyor.fn_job_workflow__step_replayed();
COMMENT ON TRIGGER job_dead_letter_workflow_replay_trg ON conveyor.job_dead_letter IS
    'Phase 6: a workflow step''s dead letter was replayed → the new job is the step''s job, the workflow resumes';

-- ---------------------------------------------------------------------------------------------
-- Views (no payloads, params or results).
-- ---------------------------------------------------------------------------------------------
CREATE VIEW conveyor.v_mot_template AS
SELECT mt.name,
       mt.version,
       jsonb_array_length(mt.steps) AS steps,
       mt.description,
       mt.created_at,
       mt.created_by,
       EXISTS (SELECT 1 FROM conveyor.job_workflow AS jw
                WHERE jw.template = mt.name AND jw.template_version = mt.version) AS used
  FROM conveyor.mot_template AS mt;
COMMENT ON VIEW conveyor.v_mot_template IS 'MOT templates by version (steps counted; no payloads)';

CREATE VIEW conveyor.v_job_workflow AS
SELECT jw.id AS workflow_id,
       jw.template,
       jw.template_version,
       jw.status,
       jw.steps_total,
       jw.steps_open,
       jw.failed_step,
       jw.cancel_reason,
       jw.cancelled_by,
       jw.created_at,
       jw.created_by,
       jw.finished_at
  FROM conveyor.job_workflow AS jw;
COMMENT ON VIEW conveyor.v_job_workflow IS 'Every workflow and its status (no params)';

CREATE VIEW conveyor.v_job_workflow_step AS
SELECT st.workflow_id,
       st.step_key,
       st.ord,
       st.kind,
       st.executor,
       st.parents,
       st.on_failure,
       st.job_id,
       coalesce(st.outcome, jq.status, 'failed') AS state,
       jq.attempts,
       st.pending_parents,
       jq.started_at,
       coalesce(st.finished_at, jq.finished_at) AS finished_at,
       st.completed_by,
       st.completed_at
  FROM conveyor.job_workflow_step AS st
  LEFT JOIN conveyor.job_queue AS jq ON jq.id = st.job_id;
COMMENT ON VIEW conveyor.v_job_workflow_step IS
    'Steps of every workflow with their state (the outcome, else the job''s status), attempts and who completed operator steps (no payloads or results)';

CREATE VIEW conveyor.v_job_workflow_health AS
SELECT jw.id AS workflow_id,
       jw.template,
       jw.template_version,
       jw.status,
       now() - jw.created_at AS age,
       jw.steps_total,
       count(*) FILTER (WHERE s.state = 'waiting')     AS steps_waiting,
       count(*) FILTER (WHERE s.state = 'queued')      AS steps_queued,
       count(*) FILTER (WHERE s.state = 'in_progress') AS steps_in_progress,
       count(*) FILTER (WHERE s.state = 'succeeded')   AS steps_succeeded,
       count(*) FILTER (WHERE s.state = 'failed')      AS steps_failed,
       count(*) FILTER (WHERE s.state IN ('cancelled', 'skipped')) AS steps_cancelled,
       (array_agg(s.step_key ORDER BY s.ord) FILTER (WHERE s.state IN ('queued', 'in_progress')))[1:20]
           AS waiting_on
  FROM conveyor.job_workflow AS jw
  JOIN LATERAL (SELECT st.step_key, st.ord, coalesce(st.outcome, jq.status, 'failed') AS state
                  FROM conveyor.job_workflow_step AS st
                  LEFT JOIN conveyor.job_queue AS jq ON jq.id = st.job_id
                 WHERE st.workflow_id = jw.id) AS s ON true
 WHERE jw.status = 'active'
 GROUP BY jw.id;
COMMENT ON VIEW conveyor.v_job_workflow_health IS
    'One row per active workflow: steps by state, age, and the steps it waits on (queued or running, first 20 in template order)';

GRANT SELECT ON conveyor.v_mot_template, conveyor.v_job_workflow, conveyor.v_job_workflow_step,
    conveyor.v_job_workflow_health TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
