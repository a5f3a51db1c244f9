-- Phase 3 data: the flags, the two event types of the silence alarm, the receivers' outbox
-- cursors and the first heartbeat row, iu_outbound_default (ROADMAP §5.1). Data only; the
-- tables, functions and triggers are in ddl.up.sql. A key or row that already exists makes this
-- file fail rather than silently keep someone else's value.

INSERT INTO conveyor.dot_config (key, value, description) VALUES
    ('queue.heartbeat.enabled', 'true',
     'Heartbeats (phase 3): register/beat/deregister, the stale check and the silence receivers. '
     'On from the start: closing the silent gap is the point of the phase. While false those '
     'functions refuse with heartbeat_disabled and the outbound worker''s ticks are not carried.'),
    ('queue.heartbeat.stale_threshold_seconds', '300',
     'A component is stale (fn_heartbeat_stale_check emits system/queue_worker_silent) once its '
     'last beat is older than this many seconds, or than 2 × its cadence if that is longer; a '
     'row''s own stale_threshold_seconds wins.'),
    ('queue.health.xmin_age_warn_seconds', '60',
     'v_queue_health.database_hint says xmin_pinned once a transaction holding back vacuum is '
     'older than this: every job finished meanwhile stays as a dead row until it ends (at 200 '
     'jobs/s, some 600 a second: bench/results soak of 2026-12-03).'),
    ('queue.health.xmin_age_warn_xids', '10000000',
     'database_hint says xmin_pinned once the vacuum horizon (a transaction, prepared transaction '
     'or replication slot) is more than this many transactions behind.'),
    ('queue.health.dead_tuples_warn', '100000',
     'database_hint says dead_tuples_high above this many dead rows in job_queue: autovacuum '
     'visits it after 1,000, so 100 × that means vacuum is not running or cannot remove them.'),
    ('queue.notify.bridge_enabled', 'false',
     'NOTIFY bridge (phase 3): when true, every statement that inserts ready jobs sends one '
     'pg_notify(''conveyor_jobs'', <queues>) at commit, a wake-up hint for listening workers. '
     'Off by default: NOTIFY takes a global lock at commit; workers poll either way.'),
    ('queue.orchestrator.leader_lease_seconds', '15',
     'How long orchestrator leadership lasts without renewal (fn_orchestrator_acquire); longer '
     'than the tick interval, short enough for a quick takeover after a crash.'),
    ('queue.periodic.missed_policy', '"latest"',
     'What fn_periodic_enqueue_due enqueues for slots missed during downtime: "latest" (only the '
     'most recent missed slot) or "all" (every missed slot, at most the 100 most recent).');

SELECT conveyor.fn_event_type_register(
    'system/queue_worker_silent',
    'A component stopped beating: its last beat is older than its stale threshold. One event per '
    'silence episode; payload {component, kind, epoch, last_beat_at, registered_at, '
    'cadence_seconds, threshold_seconds, silent_since}.');
SELECT conveyor.fn_event_type_register(
    'system/queue_worker_recovered',
    'A silent component beats again (or was deregistered): its silence episode is closed; payload '
    '{component, kind, epoch, last_beat_at, silent_since, recovered_at, silent_seconds, deregistered}.');

-- The receivers start at the present: every event below the read horizon is older than the
-- event types themselves, and every event at or above it is still to come (a cursor at
-- (horizon - 1, max id) skips nothing that commits later).
INSERT INTO conveyor.event_outbox_cursor (consumer, last_txid, last_id)
SELECT c.consumer,
       (greatest(conveyor.fn_outbox_horizon()::text::numeric - 1, 0)::text)::xid8,
       9223372036854775807
  FROM (VALUES ('watchdog'), ('red_zones')) AS c(consumer);

-- iu_outbound_default: the first heartbeat row, with its cadence and its existing last_run_at
-- as the last beat; from now on every tick beats through the trigger on iu_outbound_worker.
INSERT INTO conveyor.queue_heartbeat
       (component, component_kind, cadence_seconds, last_beat_at, metadata)
SELECT w.name, 'outbound', least(w.cadence_seconds, 86400), w.last_run_at,
       jsonb_build_object('consumer', w.consumer, 'sink', w.sink,
                          'source', 'conveyor.iu_outbound_worker')
  FROM conveyor.iu_outbound_worker AS w
 WHERE w.name = 'iu_outbound_default';
