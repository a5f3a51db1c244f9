-- Phase 3 — heartbeat + NOTIFY bridge + orchestrator cadence (ROADMAP §5): closes the silent gap
-- (a worker that stopped for days without anyone noticing). Needs phase 1 (job_queue,
-- job_dead_letter, the fn_job_* helpers) and phase 0 (dot_config, the outbox and its cursors,
-- iu_outbound_worker). Additive: event_outbox and iu_core.iu_staging_* are not touched; phase 0's
-- fn_iu_outbound_tick stays as it is and beats through a trigger on iu_outbound_worker.
--   * queue_heartbeat with register / beat / deregister and the stale check, which emits ONE
--     system/queue_worker_silent per silence episode and system/queue_worker_recovered when it
--     ends; the watchdog (D31) and red-zones (D43) receivers read those events through their own
--     outbox cursors;
--   * v_queue_health: one row per live component with heartbeat, backlog, leases, dead letters,
--     outbox lag and the database-wide signals that matter for a queue;
--   * the NOTIFY bridge (a statement trigger on job_queue, off by default);
--   * orchestrator leadership through a leader row (term + expiry), and periodic (cron) jobs.
-- Flags and seed rows (the iu_outbound_default heartbeat, event types, receiver cursors) are in
-- data.up.sql.

-- ---------------------------------------------------------------------------------------------
-- queue_heartbeat: one row per named component.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.queue_heartbeat (
    component               text        NOT NULL,
    component_kind          text        NOT NULL,
    cadence_seconds         integer     NOT NULL,
    stale_threshold_seconds integer,
    epoch                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    registered_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_beat_at            timestamptz,
    deregistered_at         timestamptz,
    silent_since            timestamptz,
    metadata                jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT queue_heartbeat_pkey PRIMARY KEY (component),
    CONSTRAINT queue_heartbeat_component_check
        CHECK (octet_length(component) BETWEEN 1 AND 255),
    CONSTRAINT queue_heartbeat_component_kind_check
        CHECK (component_kind IN ('worker', 'orchestrator', 'outbound', 'listener', 'other')),
    CONSTRAINT queue_heartbeat_cadence_seconds_check CHECK (cadence_seconds BETWEEN 1 AND 86400),
    CONSTRAINT queue_heartbeat_stale_threshold_seconds_check CHECK (stale_threshold_seconds >= 1),
    CONSTRAINT queue_heartbeat_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
)
-- Every beat rewrites a row: few rows, many updates. last_beat_at is not indexed, so beats are
-- HOT updates; the free space per page keeps the new version on the same page, and vacuum runs
-- after a fixed number of dead rows rather than a fraction of a tiny table.
WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
COMMENT ON TABLE conveyor.queue_heartbeat IS
    'One row per named component that beats (workers, orchestrators, the outbound worker, listeners). '
    'Write through fn_heartbeat_register / fn_heartbeat_beat / fn_heartbeat_deregister; '
    'fn_heartbeat_stale_check opens and closes silence episodes. Deregistered rows stay as history.';
COMMENT ON COLUMN conveyor.queue_heartbeat.component IS
    'Component name (1..255 bytes); a worker uses the name it claims jobs with (leased_by).';
COMMENT ON COLUMN conveyor.queue_heartbeat.component_kind IS
    'worker, orchestrator, outbound, listener or other.';
COMMENT ON COLUMN conveyor.queue_heartbeat.cadence_seconds IS
    'How often the component beats; v_queue_health calls it fresh up to 2 × cadence.';
COMMENT ON COLUMN conveyor.queue_heartbeat.stale_threshold_seconds IS
    'Silence after which it is stale; NULL: the larger of queue.heartbeat.stale_threshold_seconds '
    'and 2 × cadence_seconds. Set by an operator; kept across re-registrations.';
COMMENT ON COLUMN conveyor.queue_heartbeat.epoch IS
    'Incarnation: new at every fn_heartbeat_register; a beat carrying an older epoch is refused '
    '(epoch_superseded), so a replaced process cannot keep its successor looking alive.';
COMMENT ON COLUMN conveyor.queue_heartbeat.registered_at IS 'When the current incarnation registered.';
COMMENT ON COLUMN conveyor.queue_heartbeat.last_beat_at IS
    'clock_timestamp() of the last beat of this incarnation (NULL: none yet). For the outbound '
    'worker: its iu_outbound_worker.last_run_at, carried by a trigger on every tick.';
COMMENT ON COLUMN conveyor.queue_heartbeat.deregistered_at IS
    'Graceful stop: set by fn_heartbeat_deregister; such a row is never reported silent and is '
    'left out of v_queue_health.';
COMMENT ON COLUMN conveyor.queue_heartbeat.silent_since IS
    'Open silence episode: when fn_heartbeat_stale_check found it stale and emitted '
    'system/queue_worker_silent; cleared (with system/queue_worker_recovered) when it is alive '
    'again or deregistered.';
COMMENT ON COLUMN conveyor.queue_heartbeat.metadata IS
    'What the component says about itself: queues, kinds, host, pid (a JSON object ≤ 8 KB; never '
    'secrets). metadata->''queues'' scopes a worker''s backlog in v_queue_health.';

-- ---------------------------------------------------------------------------------------------
-- The receivers of the silence events: watchdog alerts (D31) and red zones (D43).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.queue_watchdog_alert (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    event_id        bigint      NOT NULL,
    component       text        NOT NULL,
    alert           text        NOT NULL,
    raised_at       timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    CONSTRAINT queue_watchdog_alert_pkey PRIMARY KEY (id),
    CONSTRAINT queue_watchdog_alert_event_id_key UNIQUE (event_id),
    CONSTRAINT queue_watchdog_alert_alert_check CHECK (alert IN ('silent', 'recovered')),
    CONSTRAINT queue_watchdog_alert_acknowledged_check
        CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
CREATE INDEX queue_watchdog_alert_open_idx ON conveyor.queue_watchdog_alert (raised_at, id)
    WHERE acknowledged_at IS NULL;
COMMENT ON INDEX conveyor.queue_watchdog_alert_open_idx IS 'Unacknowledged alerts, oldest first.';
COMMENT ON TABLE conveyor.queue_watchdog_alert IS
    'D31 watchdog: one alert per system/queue_worker_silent or _recovered event, filled by '
    'fn_watchdog_receive (cursor ''watchdog''), acknowledged with fn_watchdog_acknowledge.';
COMMENT ON COLUMN conveyor.queue_watchdog_alert.event_id IS
    'event_outbox.id of the event (unique: an event raises one alert; no foreign key, so outbox '
    'retention can prune).';
COMMENT ON COLUMN conveyor.queue_watchdog_alert.alert IS 'silent or recovered.';
COMMENT ON COLUMN conveyor.queue_watchdog_alert.raised_at IS 'When the event was emitted (its created_at).';
COMMENT ON COLUMN conveyor.queue_watchdog_alert.received_at IS 'When the watchdog recorded it.';

CREATE TABLE conveyor.queue_red_zone (
    component text        NOT NULL,
    since     timestamptz NOT NULL,
    event_id  bigint      NOT NULL,
    CONSTRAINT queue_red_zone_pkey PRIMARY KEY (component)
);
COMMENT ON TABLE conveyor.queue_red_zone IS
    'D43 red zones: components currently in a silence episode, maintained by fn_red_zones_receive '
    '(cursor ''red_zones''): in on system/queue_worker_silent, out on system/queue_worker_recovered.';
COMMENT ON COLUMN conveyor.queue_red_zone.since IS 'When the silence event was emitted.';
COMMENT ON COLUMN conveyor.queue_red_zone.event_id IS 'event_outbox.id of that system/queue_worker_silent event.';

-- ---------------------------------------------------------------------------------------------
-- orchestrator_leader: who owns the ticks (a row with a term and an expiry, not an advisory
-- lock, so it works through transaction-pooling PgBouncer and across database restarts).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.orchestrator_leader (
    name        text        NOT NULL DEFAULT 'default',
    holder      text,
    term        bigint      NOT NULL DEFAULT 0,
    acquired_at timestamptz,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    CONSTRAINT orchestrator_leader_pkey PRIMARY KEY (name),
    CONSTRAINT orchestrator_leader_name_check CHECK (name ~ '^[a-z0-9_]{1,63}$'),
    CONSTRAINT orchestrator_leader_term_check CHECK (term >= 0)
);
COMMENT ON TABLE conveyor.orchestrator_leader IS
    'Orchestrator leadership (row ''default''): fn_orchestrator_acquire renews or takes over, '
    'fn_orchestrator_check fences a deposed leader, fn_orchestrator_resign steps down.';
COMMENT ON COLUMN conveyor.orchestrator_leader.holder IS 'The leading orchestrator''s name; NULL after a resignation.';
COMMENT ON COLUMN conveyor.orchestrator_leader.term IS
    'Leadership term: + 1 at every takeover, unchanged by renewals; a leader acts only under its term.';
COMMENT ON COLUMN conveyor.orchestrator_leader.acquired_at IS 'When the current term began.';
COMMENT ON COLUMN conveyor.orchestrator_leader.expires_at IS
    'The lease: after it (clock_timestamp()) anyone may take over.';

-- ---------------------------------------------------------------------------------------------
-- job_periodic: cron schedules whose slots fn_periodic_enqueue_due turns into jobs.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.job_periodic (
    name       text        NOT NULL,
    cron       text        NOT NULL,
    kind       text        NOT NULL,
    queue      text        NOT NULL DEFAULT 'default',
    payload    jsonb       NOT NULL DEFAULT '{}',
    priority   integer     NOT NULL DEFAULT 0,
    enabled    boolean     NOT NULL DEFAULT true,
    last_slot  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_periodic_pkey PRIMARY KEY (name),
    CONSTRAINT job_periodic_name_check
        CHECK (octet_length(name) <= 128 AND name ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$'),
    CONSTRAINT job_periodic_payload_check CHECK (jsonb_typeof(payload) = 'object')
);
COMMENT ON TABLE conveyor.job_periodic IS
    'Periodic (cron) jobs: fn_periodic_register / fn_periodic_unregister; the orchestrator''s '
    'fn_periodic_enqueue_due enqueues each due slot once.';
COMMENT ON COLUMN conveyor.job_periodic.cron IS
    '5-field cron expression (minute hour day-of-month month day-of-week) or @hourly/@daily/'
    '@weekly/@monthly/@yearly, evaluated in UTC.';
COMMENT ON COLUMN conveyor.job_periodic.payload IS 'Payload of every enqueued job (may hold personal data: no view exposes it).';
COMMENT ON COLUMN conveyor.job_periodic.enabled IS 'false: fn_periodic_enqueue_due leaves it alone (fn_periodic_register enables it again).';
COMMENT ON COLUMN conveyor.job_periodic.last_slot IS
    'The newest slot enqueued (NULL: none yet; slots then count from created_at).';

GRANT ALL ON TABLE conveyor.queue_heartbeat, conveyor.queue_watchdog_alert, conveyor.queue_red_zone,
    conveyor.orchestrator_leader, conveyor.job_periodic
    TO conveyor_admin;

-- ---------------------------------------------------------------------------------------------
-- Functions: private helpers first, then the public API (each file revokes PUBLIC and grants).
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_heartbeat__component.3.sql
\ir ../../functions/fn_heartbeat__metadata.3.sql
\ir ../../functions/fn_heartbeat_register.3.sql
\ir ../../functions/fn_heartbeat_beat.3.sql
\ir ../../functions/fn_heartbeat_deregister.3.sql
\ir ../../functions/fn_heartbeat_stale_check.3.sql
\ir ../../functions/fn_iu_outbound__heartbeat.3.sql
\ir ../../functions/fn_watchdog_receive.3.sql
\ir ../../functions/fn_watchdog_acknowledge.3.sql
\ir ../../functions/fn_red_zones_receive.3.sql
\ir ../../functions/fn_queue_health__db_signals.3.sql
\ir ../../functions/fn_job__notify_bridge.3.sql
\ir ../../functions/fn_orchestrator_acquire.3.sql
\ir ../../functions/fn_orchestrator_check.3.sql
\ir ../../functions/fn_orchestrator_resign.3.sql
\ir ../../functions/fn_cron__field.3.sql
\ir ../../functions/fn_cron__parse.3.sql
\ir ../../functions/fn_cron__walk.3.sql
\ir ../../functions/fn_cron_next.3.sql
\ir ../../functions/fn_periodic_register.3.sql
\ir ../../functions/fn_periodic_unregister.3.sql
\ir ../../functions/fn_periodic_enqueue_due.3.sql

-- ---------------------------------------------------------------------------------------------
-- Triggers.
-- ---------------------------------------------------------------------------------------------
-- The outbound worker beats on every tick: phase 0's fn_iu_outbound_tick stamps last_run_at, and
-- this carries it into queue_heartbeat (ROADMAP §5.1).
CREATE TRIGGER iu_outbound_worker_heartbeat_trg
    AFTER UPDATE OF last_run_at ON conveyor.iu_outbound_worker
    FOR EACH ROW
    WHEN (NEW.last_run_at IS DISTINCT FROM OLD.last_run_at)
    EXECUTE FUNCTION conveyor.fn_iu_outbound__heartbeat();
COMMENT ON TRIGGER iu_outbound_worker_heartbeat_trg ON conveyor.iu_outbound_worker IS
    'Phase 3: carries last_run_at into the outbound worker''s queue_heartbeat row (fn_iu_outbound__heartbeat).';

-- The NOTIFY bridge: one notification per inserting statement, only while the flag is on.
CREATE TRIGGER job_queue_notify_bridge_trg
    AFTER INSERT ON conveyor.job_queue
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION conveyor.fn_job__notify_bridge();
COMMENT ON TRIGGER job_queue_notify_bridge_trg ON conveyor.job_queue IS
    'Phase 3 NOTIFY bridge: while queue.notify.bridge_enabled, one pg_notify(''conveyor_jobs'', <queues>) per statement inserting ready jobs (fn_job__notify_bridge).';

-- ---------------------------------------------------------------------------------------------
-- Views: observability without payloads or metadata secrets.
-- ---------------------------------------------------------------------------------------------
-- Cheap enough to poll: job_queue and job_dead_letter are each aggregated once (per queue, per
-- lease holder), and the per-component figures are picked from those few aggregate rows; the
-- outbox lag is counted only for outbound components.
CREATE VIEW conveyor.v_queue_health AS
WITH clock AS MATERIALIZED (
    SELECT clock_timestamp() AS ts
), settings AS MATERIALIZED (
    SELECT greatest(coalesce(
               (SELECT CASE WHEN jsonb_typeof(dc.value) = 'number' THEN dc.value::numeric END
                  FROM conveyor.dot_config AS dc
                 WHERE dc.key = 'queue.heartbeat.stale_threshold_seconds'),
               300), 1) AS threshold_seconds
), hb AS MATERIALIZED (
    SELECT h.component,
           h.component_kind,
           h.cadence_seconds,
           coalesce(h.stale_threshold_seconds,
                    greatest(s.threshold_seconds, 2 * h.cadence_seconds))::double precision
               AS threshold_seconds,
           h.registered_at,
           h.last_beat_at,
           h.silent_since,
           extract(epoch FROM c.ts - h.last_beat_at)::double precision AS age_seconds,
           CASE WHEN h.component_kind = 'worker' AND jsonb_typeof(h.metadata -> 'queues') = 'array'
                THEN ARRAY(SELECT q.name FROM jsonb_array_elements_text(h.metadata -> 'queues') AS q(name))
           END AS queues
      FROM conveyor.queue_heartbeat AS h
     CROSS JOIN clock AS c
     CROSS JOIN settings AS s
     WHERE h.deregistered_at IS NULL
), backlog AS MATERIALIZED (
    SELECT jq.queue,
           count(*) FILTER (WHERE jq.run_at <= now()) AS ready,
           min(jq.run_at) FILTER (WHERE jq.run_at <= now()) AS oldest_ready
      FROM conveyor.job_queue AS jq
     WHERE jq.status = 'queued'
     GROUP BY jq.queue
), running AS MATERIALIZED (
    SELECT jq.leased_by,
           count(*) AS in_progress,
           count(*) FILTER (WHERE jq.lease_expires_at < c.ts) AS expired
      FROM conveyor.job_queue AS jq
     CROSS JOIN clock AS c
     WHERE jq.status = 'in_progress'
     GROUP BY jq.leased_by
), dead AS MATERIALIZED (
    SELECT dl.queue, count(*) AS open
      FROM conveyor.job_dead_letter AS dl
     WHERE dl.resolved_at IS NULL
     GROUP BY dl.queue
), signals AS MATERIALIZED (
    SELECT sig.oldest_xmin_age_seconds, sig.oldest_xmin_age_xids, sig.job_queue_dead_tuples,
           sig.job_queue_live_tuples, sig.autovacuum_off_tables, sig.notification_queue_usage,
           sig.database_hint
      FROM conveyor.fn_queue_health__db_signals() AS sig
)
SELECT hb.component,
       hb.component_kind,
       hb.cadence_seconds,
       hb.threshold_seconds AS stale_threshold_seconds,
       hb.registered_at,
       hb.last_beat_at,
       hb.age_seconds AS heartbeat_age_seconds,
       CASE WHEN hb.last_beat_at IS NULL THEN 'never'
            WHEN hb.age_seconds > hb.threshold_seconds THEN 'stale'
            WHEN hb.age_seconds <= 2 * hb.cadence_seconds THEN 'fresh'
            ELSE 'late'
       END AS status_hint,
       hb.silent_since,
       lag.lag_events AS cursor_lag_events,
       coalesce(bl.ready, 0) AS backlog_count,
       extract(epoch FROM c.ts - bl.oldest_ready)::double precision AS oldest_ready_age_seconds,
       coalesce(CASE WHEN hb.component_kind = 'worker' THEN rw.in_progress ELSE rt.in_progress END, 0)
           AS in_progress_count,
       coalesce(CASE WHEN hb.component_kind = 'worker' THEN rw.expired ELSE rt.expired END, 0)
           AS expired_lease_count,
       coalesce(dd.open, 0) AS dead_letter_open_count,
       sig.oldest_xmin_age_seconds,
       sig.oldest_xmin_age_xids,
       sig.job_queue_dead_tuples,
       sig.job_queue_live_tuples,
       sig.autovacuum_off_tables,
       sig.notification_queue_usage,
       sig.database_hint
  FROM hb
 CROSS JOIN clock AS c
 CROSS JOIN signals AS sig
 CROSS JOIN (SELECT sum(r.in_progress)::bigint AS in_progress, sum(r.expired)::bigint AS expired
               FROM running AS r) AS rt
  LEFT JOIN running AS rw ON hb.component_kind = 'worker' AND rw.leased_by = hb.component
  LEFT JOIN LATERAL (SELECT sum(b.ready)::bigint AS ready, min(b.oldest_ready) AS oldest_ready
                       FROM backlog AS b
                      WHERE hb.queues IS NULL OR b.queue = ANY (hb.queues)) AS bl ON true
  LEFT JOIN LATERAL (SELECT sum(d.open)::bigint AS open
                       FROM dead AS d
                      WHERE hb.queues IS NULL OR d.queue = ANY (hb.queues)) AS dd ON true
  LEFT JOIN conveyor.iu_outbound_worker AS w
         ON hb.component_kind = 'outbound' AND w.name = hb.component
  LEFT JOIN LATERAL (SELECT l.lag_events
                       FROM conveyor.v_event_outbox_cursor_lag AS l
                      WHERE l.consumer = w.consumer) AS lag ON true;
COMMENT ON VIEW conveyor.v_queue_health IS
    'One row per live (not deregistered) component: heartbeat age and status_hint (fresh ≤ 2 × '
    'cadence, late up to the stale threshold, stale past it, never: no beat yet), open silence '
    'episode, outbox cursor lag (outbound workers), ready backlog and oldest ready age (a worker: '
    'the queues in metadata->''queues'', else all), in-progress and expired leases (a worker: its '
    'own leases, else all), open dead letters, and database-wide signals (oldest xmin holder age '
    'in seconds and transactions, job_queue dead and live tuples, queue tables autovacuum skips, '
    'NOTIFY queue usage, and database_hint: ok or the problems against queue.health.*). No payloads.';

CREATE VIEW conveyor.v_red_zones AS
SELECT rz.component,
       h.component_kind,
       rz.since,
       extract(epoch FROM clock_timestamp() - rz.since)::double precision AS silent_seconds,
       h.last_beat_at,
       rz.event_id
  FROM conveyor.queue_red_zone AS rz
  LEFT JOIN conveyor.queue_heartbeat AS h ON h.component = rz.component;
COMMENT ON VIEW conveyor.v_red_zones IS
    'D43 red zones: components currently in trouble (silent and not yet recovered), with how long.';

CREATE VIEW conveyor.v_queue_watchdog_alert_open AS
SELECT a.id,
       a.event_id,
       a.component,
       a.alert,
       a.raised_at,
       a.received_at
  FROM conveyor.queue_watchdog_alert AS a
 WHERE a.acknowledged_at IS NULL;
COMMENT ON VIEW conveyor.v_queue_watchdog_alert_open IS
    'D31 watchdog alerts not yet acknowledged (fn_watchdog_acknowledge).';

CREATE VIEW conveyor.v_orchestrator_leader AS
SELECT ol.name,
       ol.holder,
       ol.term,
       ol.acquired_at,
       ol.expires_at,
       ol.holder IS NOT NULL AND ol.expires_at > clock_timestamp() AS active
  FROM conveyor.orchestrator_leader AS ol;
COMMENT ON VIEW conveyor.v_orchestrator_leader IS
    'Who leads the orchestrators, under which term, until when; active is false once the lease ran out.';

CREATE VIEW conveyor.v_job_periodic AS
SELECT jp.name,
       jp.cron,
       jp.kind,
       jp.queue,
       jp.priority,
       jp.enabled,
       jp.last_slot,
       conveyor.fn_cron_next(jp.cron, coalesce(jp.last_slot, jp.created_at)) AS next_slot,
       jp.created_at,
       jp.updated_at
  FROM conveyor.job_periodic AS jp;
COMMENT ON VIEW conveyor.v_job_periodic IS
    'Periodic jobs with their last enqueued slot and the next one (UTC cron); no payload.';

GRANT SELECT ON conveyor.v_queue_health, conveyor.v_red_zones, conveyor.v_queue_watchdog_alert_open,
    conveyor.v_orchestrator_leader, conveyor.v_job_periodic
    TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
