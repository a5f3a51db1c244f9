-- Phase 5 data down: delete what data.up.sql inserted. REFUSES while a pilot step job is still
-- waiting, queued or running: after the rollback no handler or step function would exist for it,
-- so it would be stranded. Switch pilot.cut.enabled on and let the jobs finish, or cancel them
-- (fn_job_cancel), first. Finished jobs and dead letters stay in phase 1's tables as history.
-- The consumer deliveries of the pilot's rows stay too (consumer_delivery keeps no foreign key).

DO $$
DECLARE
    v_live bigint;
BEGIN
    SELECT count(*) INTO v_live
      FROM conveyor.job_queue AS jq
     WHERE jq.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')
       AND jq.status IN ('waiting', 'queued', 'in_progress');
    IF v_live > 0 THEN
        RAISE EXCEPTION 'phase 5 rollback: % pilot step jobs are still waiting, queued or running', v_live
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Switch pilot.cut.enabled on and let them finish, or cancel them with fn_job_cancel, then roll back.';
    END IF;
END;
$$;

DELETE FROM conveyor.job_subscription AS js
 WHERE js.executor = 'agent' AND js.kind_pattern = 'staging.*';

DELETE FROM conveyor.consumer_registry AS cr
 WHERE (cr.consumer, cr.event_pattern) IN (('pilot.cut', 'staging.record_approved'),
                                            ('pilot.verify_cut', 'staging.record_consumed'),
                                            ('pilot.cleanup', 'staging.record_verified'),
                                            ('pilot.cleaned', 'staging.record_cleaned'));

DELETE FROM conveyor.dot_config AS dc
 WHERE dc.key IN ('pilot.cut.enabled', 'pilot.cut.collection', 'pilot.cut.payload_max_bytes',
                  'pilot.cut.stuck_threshold_seconds');
