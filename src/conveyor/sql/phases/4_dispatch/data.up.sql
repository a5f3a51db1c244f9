-- Phase 4 data: the dispatch flag (off), the executor vocabulary, the legacy auto-instantiate
-- consumer as a registry row, and the hand-over from the legacy path to dispatch. Data only; the
-- tables and functions are in ddl.up.sql. A key or row that already exists makes this file fail
-- rather than silently keep someone else's value.
--
-- Hand-over: the legacy path (fn_iu_auto_instantiate_run, cursor legacy.auto_instantiate) is
-- switched off here and its work is done by dispatch from now on, so the two never both act on
-- the same event; and since the effect is idempotent per source_event_id, even a double delivery
-- would be harmless. The dispatch cursor starts exactly where the legacy cursor stands, so events
-- the legacy path already handled are not dispatched again and none after it is skipped. Until
-- an operator sets queue.dispatch.enabled, new iu.template.instance_auto_composed events wait in
-- the outbox (they are not lost: the cursor does not move).

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('queue.dispatch.enabled', 'false',
     'Dispatch (phase 4): fn_consumer_dispatch applies consumer_registry rows to outbox events. '
     'While false it refuses with dispatch_disabled and changes nothing.');

UPDATE conveyor.dot_config AS dc
   SET value = 'false', updated_at = now(), updated_by = current_user
 WHERE dc.key = 'iu.auto_instantiate.legacy_enabled';

INSERT INTO conveyor.executor_kind (executor, description) VALUES
    ('agent', 'An AI agent worker'),
    ('codex', 'A code-generation agent worker'),
    ('dot', 'The DOT platform''s own workers'),
    ('external_worker', 'A process outside the platform (e.g. the channel adapter)'),
    ('operator', 'A human operator working jobs by hand');

INSERT INTO conveyor.consumer_registry (consumer, event_pattern, action, target, created_by)
VALUES ('legacy.auto_instantiate', 'iu.template.instance_auto_composed', 'call_function',
        'conveyor.fn_iu_auto_instantiate_from_event(bigint)'::regprocedure, 'phase 4');

INSERT INTO conveyor.event_outbox_cursor (consumer, last_txid, last_id)
SELECT 'dispatch', coalesce(lc.last_txid, '0'::xid8), coalesce(lc.last_id, 0)
  FROM (VALUES (1)) AS one(n)
  LEFT JOIN conveyor.event_outbox_cursor AS lc ON lc.consumer = 'legacy.auto_instantiate';
