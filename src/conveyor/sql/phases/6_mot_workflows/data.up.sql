-- Phase 6 data: the workflow flag (off) and the first template, the MARK/CUT pipeline as a 6-step
-- MOT graph (ROADMAP §8.1). Data only; tables and functions are in ddl.up.sql. A key or row that
-- already exists makes this file fail rather than silently keep someone else's value.
--
-- staging.cut_pipeline v1: mark → approve (a person: executor operator, queue operator) → cut →
-- verify_cut → cleanup → report. cut, verify_cut and cleanup are phase 5's job kinds (their
-- handlers call iu_core.fn_iu_op_cut / verify_cut / cleanup, idempotent per record); mark and
-- report are the steps around them. Emit with params {"record_id": …} (merged into each step's
-- payload). A failed cut or verify fails the workflow (the default policy: replaying its dead
-- letter resumes it); report only reports, so its failure does not (continue).

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('workflow.mot.enabled', 'false',
     'MOT workflows (phase 6): fn_mot_graph_emit, fn_job_workflow_cancel, fn_job_workflow_complete_step, '
     'fn_job_workflow_refresh and fn_job_workflow_parents. While false they refuse with mot_disabled and '
     'change nothing (steps already emitted still release their children as they end).');

INSERT INTO conveyor.mot_template (name, version, steps, description, created_by) VALUES
    ('staging.cut_pipeline', 1,
     '[{"key": "mark",       "kind": "staging.mark",       "executor": "dot",      "payload": {"op": "mark"}},
       {"key": "approve",    "kind": "staging.approve",    "executor": "operator", "parents": ["mark"],
        "payload": {"op": "approve"}},
       {"key": "cut",        "kind": "staging.cut",        "executor": "dot",      "parents": ["approve"],
        "payload": {"op": "cut"}, "timeout_seconds": 3600},
       {"key": "verify_cut", "kind": "staging.verify_cut", "executor": "dot",      "parents": ["cut"],
        "payload": {"op": "verify_cut"}},
       {"key": "cleanup",    "kind": "staging.cleanup",    "executor": "dot",      "parents": ["verify_cut"],
        "payload": {"op": "cleanup"}},
       {"key": "report",     "kind": "staging.cut_report", "executor": "dot",      "parents": ["cleanup"],
        "payload": {"op": "report"}, "on_failure": "continue"}]',
     'The MARK/CUT pipeline of phase 5 as a MOT workflow: mark, the operator''s approval, cut, verify, cleanup, report',
     'phase 6');
