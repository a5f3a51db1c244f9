-- Phase 6 data down: delete the rows data.up.sql inserted. The shipped template goes only while
-- no workflow was emitted from it; templates, workflows and steps that remain are runtime data
-- of phase 6's tables: the runner archives them and ddl.down.sql drops the tables.
-- It REFUSES while a workflow step's job is still live, as ddl.down.sql does. The guard is in
-- both files on purpose: each runs in its own transaction and may be run alone (psql -1 -f), and
-- this one runs first, so checking here keeps a refused rollback from deleting the flag and the
-- template before ddl.down.sql would refuse; ddl.down.sql checks again for when it runs alone.

DO $$
DECLARE
    v_live text;
BEGIN
    SELECT string_agg(DISTINCT jq.workflow_id::text, ', ') INTO v_live
      FROM conveyor.job_queue AS jq
     WHERE jq.workflow_id IS NOT NULL AND jq.status IN ('waiting', 'queued', 'in_progress');
    IF v_live IS NOT NULL THEN
        RAISE EXCEPTION 'phase 6 rollback: workflows still have live steps: %', left(v_live, 1000)
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Cancel them (conveyor workflow cancel ID) or let them finish before rolling back phase 6.';
    END IF;
END;
$$;

DELETE FROM conveyor.mot_template AS mt
 WHERE mt.name = 'staging.cut_pipeline' AND mt.version = 1
   AND NOT EXISTS (SELECT 1 FROM conveyor.job_workflow AS jw
                    WHERE jw.template = mt.name AND jw.template_version = mt.version);

DELETE FROM conveyor.dot_config AS dc WHERE dc.key = 'workflow.mot.enabled';
