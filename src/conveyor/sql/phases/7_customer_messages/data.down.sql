-- Phase 7 data down: delete what data.up.sql inserted. REFUSES while a customer_message_* job is
-- still waiting, queued or running: after the rollback no function would exist for it. Reject
-- or finish those messages (or cancel their workflows) first. The template stays while
-- workflows were emitted from it (job_workflow references it); event types still used by
-- outbox events stay registered (the outbox keeps its history). Finished jobs stay in phase 1's
-- tables as history.

DO $$
DECLARE
    v_live bigint;
BEGIN
    SELECT count(*) INTO v_live
      FROM conveyor.job_queue AS jq
     WHERE jq.kind IN ('customer_message_inbound', 'customer_message_classify', 'customer_message_draft',
                       'customer_message_approve', 'customer_message_send')
       AND jq.status IN ('waiting', 'queued', 'in_progress');
    IF v_live > 0 THEN
        RAISE EXCEPTION 'phase 7 rollback: % customer message jobs are still waiting, queued or running', v_live
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Let them finish, or reject the messages (conveyor messages reject) / cancel their workflows, then roll back.';
    END IF;
END;
$$;

DELETE FROM conveyor.mot_template AS mt
 WHERE mt.name = 'customer.message_flow' AND mt.version = 1
   AND NOT EXISTS (SELECT 1 FROM conveyor.job_workflow AS jw
                    WHERE jw.template = mt.name AND jw.template_version = mt.version);

DELETE FROM conveyor.job_subscription AS js
 WHERE (js.executor, js.kind_pattern) IN (('external_worker', 'customer_message_inbound'),
                                          ('external_worker', 'customer_message_classify'),
                                          ('external_worker', 'customer_message_draft'),
                                          ('external_worker', 'customer_message_send'),
                                          ('operator', 'customer_message_approve'));

DELETE FROM conveyor.event_type_registry AS etr
 WHERE etr.event_type IN ('customer.message_received', 'customer.message_classified', 'customer.message_drafted',
                          'customer.message_approved', 'customer.message_approval_voided',
                          'customer.message_rejected', 'customer.message_sent', 'customer.message_reconcile',
                          'customer.mailbox_uidvalidity_changed')
   AND NOT EXISTS (SELECT 1 FROM conveyor.event_outbox AS eo WHERE eo.event_type = etr.event_type)
   AND NOT EXISTS (SELECT 1 FROM conveyor.iu_sql_event_route AS r WHERE r.target_event_type = etr.event_type);

DELETE FROM conveyor.dot_config AS dc
 WHERE dc.key IN ('customer.channel.enabled', 'customer.approve_required', 'customer.body.max_bytes',
                  'customer.message_id_domain');
