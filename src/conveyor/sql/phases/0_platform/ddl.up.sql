-- Phase 0 — the platform the roadmap assumes exists: schemas conveyor and iu_core, roles,
-- dot_config, the event vocabulary, the transactional event_outbox with per-consumer cursors,
-- SQL event routes, the staging record with its MARK → APPROVE → CUT → VERIFY_CUT → CLEANUP
-- operations, the legacy auto-instantiate consumer and the outbound worker iu_outbound_default.
-- DDL only; the rows these tables start with are in data.up.sql.
--
-- ROADMAP §12: event_outbox and iu_core.iu_staging_* may never change after this phase (the
-- runner fingerprints them), so their definitions below are final.

-- Roles are cluster-wide and may already exist (another database, an earlier install); they
-- are created if missing and never dropped by ddl.down.sql.
DO $$
BEGIN
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'conveyor_admin') THEN
            CREATE ROLE conveyor_admin NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object THEN
        NULL;  -- created concurrently by another database's migration
    END;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'conveyor_worker') THEN
            CREATE ROLE conveyor_worker NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object THEN
        NULL;
    END;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'conveyor_reader') THEN
            CREATE ROLE conveyor_reader NOLOGIN;
        END IF;
    EXCEPTION WHEN duplicate_object THEN
        NULL;
    END;
END;
$$;

-- conveyor_admin owns every function and view (owner.sql), so fn_queue_health__db_signals sees
-- other roles' sessions (their transaction start and xmin) through pg_read_all_stats, not by
-- being a superuser. Membership is cluster-wide and, like the roles, stays on rollback.
GRANT pg_read_all_stats TO conveyor_admin;

-- Connection limits: a runaway worker fleet, dashboard or script logging in as one of these
-- roles cannot take every connection and lock out the others and the superuser. Set once, as a
-- share of this server's max_connections (workers half, readers and admins a tenth each, at
-- least 2), and only where a role has none: an operator's own limit is kept. Like the roles,
-- the limits are cluster-wide and stay when a phase is rolled back. A limit counts sessions
-- that log in as the role itself, not its members.
DO $$
DECLARE
    v_max  integer := current_setting('max_connections')::integer;
    v_role record;
BEGIN
    FOR v_role IN
        SELECT r.rolname, CASE r.rolname WHEN 'conveyor_worker' THEN greatest(v_max / 2, 2)
                                         ELSE greatest(v_max / 10, 2) END AS wanted
          FROM pg_catalog.pg_roles AS r
         WHERE r.rolname IN ('conveyor_admin', 'conveyor_worker', 'conveyor_reader')
           AND r.rolconnlimit = -1
    LOOP
        EXECUTE format('ALTER ROLE %I CONNECTION LIMIT %s', v_role.rolname, v_role.wanted);
    END LOOP;
END;
$$;

-- What each role may do (granted object by object below and in every function file):
--   conveyor_admin   owns/migrates: ALL on tables, EXECUTE on every public function.
--   conveyor_worker  no table or view privileges at all; EXECUTE on the job functions a worker
--                    calls (fn_job_enqueue[_many], claim, complete[_many], fail_*, extend_lease,
--                    snooze, release, cancel, cancel_ack), the flag reads fn_config_get/enabled,
--                    the staging operations iu_core.fn_iu_op_* its handlers run, and
--                    fn_iu_auto_instantiate_from_event. Not config writes, outbox reads, cursor
--                    moves, emits or ticks (reaper, prune, replay, outbound, legacy consumer):
--                    a worker must not enable its own phase or skip another consumer's events.
--   conveyor_reader  SELECT on the v_* views only (plus fn_config_get/enabled and
--                    fn_outbox_horizon, which v_event_outbox_cursor_lag calls as the reader).
-- PUBLIC gets nothing: every function file revokes it.
--
-- Per-role guards for THIS database (ALTER ROLE … IN DATABASE is per database, hence the DO
-- block with the database's name). They bound what a stuck or compromised session can hold:
-- statements, lock waits and idle transactions (an idle transaction pins the xmin horizon and
-- any job rows it locked). ddl.down.sql RESETs exactly these settings.
-- Role settings apply only to sessions that LOG IN as the role itself: not after SET ROLE, and
-- not to a login role that is merely a member. A deployment whose workers log in under their
-- own names must give those login roles the same settings.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I SET statement_timeout = %L',
                   current_database(), '30s');
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I SET lock_timeout = %L',
                   current_database(), '5s');
    EXECUTE format('ALTER ROLE conveyor_worker IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '60s');
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I SET statement_timeout = %L',
                   current_database(), '60s');
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I SET lock_timeout = %L',
                   current_database(), '5s');
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '60s');
    EXECUTE format('ALTER ROLE conveyor_reader IN DATABASE %I SET default_transaction_read_only = %L',
                   current_database(), 'on');
END;
$$;

CREATE SCHEMA conveyor;
COMMENT ON SCHEMA conveyor IS
    'conveyor: a job substrate inside PostgreSQL. Call the fn_* functions, read the v_* views';
CREATE SCHEMA iu_core;
COMMENT ON SCHEMA iu_core IS
    'The platform''s staging core: iu_staging_record and its fn_iu_op_* operations';

REVOKE ALL ON SCHEMA conveyor FROM PUBLIC;
REVOKE ALL ON SCHEMA iu_core FROM PUBLIC;
GRANT ALL ON SCHEMA conveyor, iu_core TO conveyor_admin;
GRANT USAGE ON SCHEMA conveyor, iu_core TO conveyor_worker, conveyor_reader;

-- ---------------------------------------------------------------------------------------
-- dot_config: every flag and setting, one jsonb value per dotted key.

CREATE TABLE conveyor.dot_config (
    key         text        NOT NULL,
    value       jsonb       NOT NULL,
    description text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL DEFAULT current_user,
    CONSTRAINT dot_config_pkey PRIMARY KEY (key),
    CONSTRAINT dot_config_key_check CHECK (key ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$')
);
COMMENT ON TABLE conveyor.dot_config IS
    'Flags and settings: one jsonb value per key <area>.<feature>.<setting>. Read with fn_config_get/fn_config_enabled, write with fn_config_set';
COMMENT ON COLUMN conveyor.dot_config.key IS 'Two or more dot-separated words of a-z, 0-9 and _';
COMMENT ON COLUMN conveyor.dot_config.value IS 'A flag is on iff its value is the jsonb true';
COMMENT ON COLUMN conveyor.dot_config.updated_by IS 'Who last set the value (fn_config_set''s updated_by, else the calling role)';

-- ---------------------------------------------------------------------------------------
-- event_type_registry: the vocabulary; an event type must be registered before it is emitted.

CREATE TABLE conveyor.event_type_registry (
    event_type    text        NOT NULL,
    domain        text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL DEFAULT current_user,
    CONSTRAINT event_type_registry_pkey PRIMARY KEY (event_type),
    CONSTRAINT event_type_registry_event_type_check
        CHECK (event_type ~ '^[a-z][a-z0-9_]*([./][a-z0-9_]+)+$' AND char_length(event_type) <= 200),
    CONSTRAINT event_type_registry_domain_check
        CHECK (domain = substring(event_type FROM '^[a-z0-9_]+'))
);
COMMENT ON TABLE conveyor.event_type_registry IS
    'Registered event types (the vocabulary). Add one with fn_event_type_register';
COMMENT ON COLUMN conveyor.event_type_registry.event_type IS
    '<domain>.<name> or <domain>/<name>, lowercase, e.g. staging.record_approved, system/queue_worker_silent';
COMMENT ON COLUMN conveyor.event_type_registry.domain IS 'The part of event_type before the first . or /';

-- ---------------------------------------------------------------------------------------
-- event_outbox: the transactional outbox. Append-only; readers go through per-consumer
-- cursors ordered by (txid, id) and never read past the oldest running transaction, so an
-- event whose transaction commits late is never skipped (see fn_outbox_read).
-- No foreign key to event_type_registry on purpose: fn_outbox_emit enforces registration, and a
-- key would lock the type's registry row on every emit, forbid ever retiring a type, and (since
-- this definition is frozen by §12) could never be taken back.

CREATE TABLE conveyor.event_outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    txid       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_type text        NOT NULL,
    payload    jsonb       NOT NULL,
    source     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_outbox_pkey PRIMARY KEY (id),
    CONSTRAINT event_outbox_payload_check CHECK (jsonb_typeof(payload) = 'object')
);
CREATE INDEX event_outbox_txid_id_idx ON conveyor.event_outbox (txid, id);
CREATE INDEX event_outbox_event_type_id_idx ON conveyor.event_outbox (event_type, id);
COMMENT ON TABLE conveyor.event_outbox IS
    'Transactional outbox: events commit with the transaction that emits them (fn_outbox_emit); consumers read in (txid, id) order through event_outbox_cursor (fn_outbox_read, fn_outbox_advance). Definition frozen by ROADMAP §12';
COMMENT ON COLUMN conveyor.event_outbox.txid IS
    'Id of the emitting transaction; readers take only events with txid < fn_outbox_horizon()';
COMMENT ON COLUMN conveyor.event_outbox.id IS 'Order of emission; breaks ties within one transaction';
COMMENT ON COLUMN conveyor.event_outbox.payload IS 'A jsonb object: ids and facts, never secrets or message bodies';
COMMENT ON COLUMN conveyor.event_outbox.source IS 'Who emitted the event (a function or component name), if given';

CREATE TABLE conveyor.event_outbox_cursor (
    consumer    text        NOT NULL,
    last_txid   xid8        NOT NULL DEFAULT '0',
    last_id     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz,
    events_read bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_outbox_cursor_pkey PRIMARY KEY (consumer),
    CONSTRAINT event_outbox_cursor_consumer_check
        CHECK (consumer ~ '^[A-Za-z0-9_.:/@+=#-]{1,200}$'),
    CONSTRAINT event_outbox_cursor_last_id_check CHECK (last_id >= 0)
);
COMMENT ON TABLE conveyor.event_outbox_cursor IS
    'One read position per outbox consumer; moved only forward by fn_outbox_advance';
COMMENT ON COLUMN conveyor.event_outbox_cursor.last_txid IS 'txid of the last event passed (0: the beginning)';
COMMENT ON COLUMN conveyor.event_outbox_cursor.last_id IS 'id of the last event passed (0: the beginning)';
COMMENT ON COLUMN conveyor.event_outbox_cursor.updated_at IS 'When the cursor last moved (NULL: never)';
COMMENT ON COLUMN conveyor.event_outbox_cursor.events_read IS 'Events passed since the cursor was created';

-- ---------------------------------------------------------------------------------------
-- iu_sql_event_route: which SQL operation on which platform table emits which event type.

CREATE TABLE conveyor.iu_sql_event_route (
    route               text    NOT NULL,
    source_table        text    NOT NULL,
    operation           text    NOT NULL,
    target_event_type   text    NOT NULL,
    target_event_domain text    NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    description         text    NOT NULL DEFAULT '',
    CONSTRAINT iu_sql_event_route_pkey PRIMARY KEY (route),
    CONSTRAINT iu_sql_event_route_operation_check
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    CONSTRAINT iu_sql_event_route_target_event_domain_check
        CHECK (target_event_domain IN ('iu', 'staging', 'system')),
    CONSTRAINT iu_sql_event_route_type_in_domain_check
        CHECK (substring(target_event_type FROM '^[a-z0-9_]+') = target_event_domain),
    CONSTRAINT iu_sql_event_route_target_event_type_fkey
        FOREIGN KEY (target_event_type) REFERENCES conveyor.event_type_registry (event_type)
);
COMMENT ON TABLE conveyor.iu_sql_event_route IS
    'Routes: the event a SQL operation on a platform table emits. The fn_iu_op_* functions look up route iu_staging_record.<op>; a disabled route emits nothing';
COMMENT ON COLUMN conveyor.iu_sql_event_route.source_table IS 'Qualified table the operation writes, e.g. iu_core.iu_staging_record';
COMMENT ON COLUMN conveyor.iu_sql_event_route.target_event_domain IS
    'Domain of target_event_type; CHECK iu_sql_event_route_target_event_domain_check allows iu, staging, system (phase 4 widens it by name)';
COMMENT ON COLUMN conveyor.iu_sql_event_route.enabled IS 'false: the operation still runs but emits no event';

-- ---------------------------------------------------------------------------------------
-- iu_core.iu_staging_record: a record staged in a collection and moved one step at a time
-- through marked → approved → cut → verified → cleaned. Each step's by/at stamps are set
-- exactly when the record has reached that step. Definition frozen by ROADMAP §12.

CREATE TABLE iu_core.iu_staging_record (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    collection  text        NOT NULL,
    record_key  text        NOT NULL,
    status      text        NOT NULL DEFAULT 'marked',
    content_ref text,
    marked_by   text        NOT NULL,
    marked_at   timestamptz NOT NULL DEFAULT now(),
    approved_by text,
    approved_at timestamptz,
    cut_by      text,
    cut_at      timestamptz,
    cut_target  text,
    verified_by text,
    verified_at timestamptz,
    cleaned_by  text,
    cleaned_at  timestamptz,
    CONSTRAINT iu_staging_record_pkey PRIMARY KEY (id),
    CONSTRAINT iu_staging_record_collection_record_key_key UNIQUE (collection, record_key),
    CONSTRAINT iu_staging_record_status_check
        CHECK (status IN ('marked', 'approved', 'cut', 'verified', 'cleaned')),
    CONSTRAINT iu_staging_record_collection_check
        CHECK (char_length(collection) BETWEEN 1 AND 200),
    CONSTRAINT iu_staging_record_record_key_check
        CHECK (char_length(record_key) BETWEEN 1 AND 1000),
    CONSTRAINT iu_staging_record_approved_check
        CHECK ((approved_by IS NOT NULL) = (status IN ('approved', 'cut', 'verified', 'cleaned'))
               AND (approved_at IS NOT NULL) = (approved_by IS NOT NULL)),
    CONSTRAINT iu_staging_record_cut_check
        CHECK ((cut_by IS NOT NULL) = (status IN ('cut', 'verified', 'cleaned'))
               AND (cut_at IS NOT NULL) = (cut_by IS NOT NULL)
               AND (cut_target IS NULL OR cut_by IS NOT NULL)),
    CONSTRAINT iu_staging_record_verified_check
        CHECK ((verified_by IS NOT NULL) = (status IN ('verified', 'cleaned'))
               AND (verified_at IS NOT NULL) = (verified_by IS NOT NULL)),
    CONSTRAINT iu_staging_record_cleaned_check
        CHECK ((cleaned_by IS NOT NULL) = (status = 'cleaned')
               AND (cleaned_at IS NOT NULL) = (cleaned_by IS NOT NULL))
);
CREATE INDEX iu_staging_record_collection_status_idx
    ON iu_core.iu_staging_record (collection, status);
COMMENT ON TABLE iu_core.iu_staging_record IS
    'Records staged in a collection, moved marked → approved → cut → verified → cleaned by iu_core.fn_iu_op_mark/approve/cut/verify_cut/cleanup. Definition frozen by ROADMAP §12';
COMMENT ON COLUMN iu_core.iu_staging_record.record_key IS 'The record''s key within its collection; unique per collection';
COMMENT ON COLUMN iu_core.iu_staging_record.status IS 'marked, approved, cut, verified or cleaned; only ever moves forward';
COMMENT ON COLUMN iu_core.iu_staging_record.content_ref IS 'A reference to the content (URI, object key); never the content itself';
COMMENT ON COLUMN iu_core.iu_staging_record.cut_target IS 'Where CUT moved the record, if given';

-- ---------------------------------------------------------------------------------------
-- The legacy consumer's effect: one template instance per iu.template.instance_auto_composed.

CREATE TABLE conveyor.iu_template_instance (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    template        text        NOT NULL,
    instance_key    text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}',
    source_event_id bigint,
    created_by      text        NOT NULL DEFAULT current_user,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT iu_template_instance_pkey PRIMARY KEY (id),
    CONSTRAINT iu_template_instance_source_event_id_key UNIQUE (source_event_id),
    CONSTRAINT iu_template_instance_template_instance_key_key UNIQUE (template, instance_key),
    CONSTRAINT iu_template_instance_params_check CHECK (jsonb_typeof(params) = 'object')
);
COMMENT ON TABLE conveyor.iu_template_instance IS
    'Template instances created from iu.template.instance_auto_composed events (fn_iu_auto_instantiate_from_event); one per event and per (template, instance_key)';
COMMENT ON COLUMN conveyor.iu_template_instance.source_event_id IS
    'event_outbox.id of the event that created the instance (no foreign key, so outbox retention can prune)';
COMMENT ON COLUMN conveyor.iu_template_instance.created_by IS 'The source of the event that composed it';

-- ---------------------------------------------------------------------------------------
-- Outbound workers: deliver outbox events to a sink, one cursor each.

CREATE TABLE conveyor.iu_outbound_worker (
    name            text        NOT NULL,
    consumer        text        NOT NULL,
    sink            text        NOT NULL DEFAULT 'table',
    cadence_seconds integer     NOT NULL DEFAULT 60,
    last_run_at     timestamptz,
    last_delivered  bigint      NOT NULL DEFAULT 0,
    enabled         boolean     NOT NULL DEFAULT true,
    CONSTRAINT iu_outbound_worker_pkey PRIMARY KEY (name),
    CONSTRAINT iu_outbound_worker_consumer_key UNIQUE (consumer),
    CONSTRAINT iu_outbound_worker_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT iu_outbound_worker_consumer_check
        CHECK (consumer ~ '^[A-Za-z0-9_.:/@+=#-]{1,200}$'),
    CONSTRAINT iu_outbound_worker_sink_check CHECK (sink IN ('table', 'log')),
    CONSTRAINT iu_outbound_worker_cadence_seconds_check CHECK (cadence_seconds > 0)
);
COMMENT ON TABLE conveyor.iu_outbound_worker IS
    'Outbound workers: each reads the outbox through its own cursor and delivers to its sink on every fn_iu_outbound_tick';
COMMENT ON COLUMN conveyor.iu_outbound_worker.consumer IS 'Its event_outbox_cursor consumer name';
COMMENT ON COLUMN conveyor.iu_outbound_worker.sink IS 'table: rows in iu_outbound_delivery; log: events returned to the caller to log';
COMMENT ON COLUMN conveyor.iu_outbound_worker.cadence_seconds IS 'How often the orchestrator is expected to tick it';
COMMENT ON COLUMN conveyor.iu_outbound_worker.last_run_at IS
    'clock_timestamp() of the last tick, stamped even when nothing was delivered: the liveness stamp';
COMMENT ON COLUMN conveyor.iu_outbound_worker.last_delivered IS 'Events delivered by the last tick';
COMMENT ON COLUMN conveyor.iu_outbound_worker.enabled IS 'false: ticks are refused (outbound_worker_disabled)';

CREATE TABLE conveyor.iu_outbound_delivery (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    worker       text        NOT NULL,
    event_id     bigint      NOT NULL,
    event_type   text        NOT NULL,
    payload      jsonb       NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT iu_outbound_delivery_pkey PRIMARY KEY (id),
    CONSTRAINT iu_outbound_delivery_worker_event_id_key UNIQUE (worker, event_id)
);
COMMENT ON TABLE conveyor.iu_outbound_delivery IS
    'The table sink: one row per event delivered by an outbound worker (unique per worker and event); history, so no foreign key to the worker row';

GRANT ALL ON TABLE
    conveyor.dot_config, conveyor.event_type_registry, conveyor.event_outbox,
    conveyor.event_outbox_cursor, conveyor.iu_sql_event_route, iu_core.iu_staging_record,
    conveyor.iu_template_instance, conveyor.iu_outbound_worker, conveyor.iu_outbound_delivery
    TO conveyor_admin;

-- ---------------------------------------------------------------------------------------
-- Functions (one file per function version).

\ir ../../functions/fn_config_get.0.sql
\ir ../../functions/fn_config_enabled.0.sql
\ir ../../functions/fn_config_set.0.sql
\ir ../../functions/fn_event_type_register.0.sql
\ir ../../functions/fn_outbox__append.0.sql
\ir ../../functions/fn_outbox_emit.0.sql
\ir ../../functions/fn_outbox_horizon.0.sql
\ir ../../functions/fn_outbox_read.0.sql
\ir ../../functions/fn_outbox_advance.0.sql
\ir ../../functions/fn_iu_op_emit.0.sql
\ir ../../functions/fn_iu_op_transition.0.sql
\ir ../../functions/fn_iu_op_mark.0.sql
\ir ../../functions/fn_iu_op_approve.0.sql
\ir ../../functions/fn_iu_op_cut.0.sql
\ir ../../functions/fn_iu_op_verify_cut.0.sql
\ir ../../functions/fn_iu_op_cleanup.0.sql
\ir ../../functions/fn_iu_auto_instantiate_from_event.0.sql
\ir ../../functions/fn_iu_auto_instantiate_run.0.sql
\ir ../../functions/fn_iu_outbound_tick.0.sql

-- ---------------------------------------------------------------------------------------
-- Views (conveyor_reader sees only these).

CREATE VIEW conveyor.v_iu_staging_record AS
SELECT r.id,
       r.collection,
       r.record_key,
       r.status,
       CASE r.status
           WHEN 'marked' THEN 'approve'
           WHEN 'approved' THEN 'cut'
           WHEN 'cut' THEN 'verify_cut'
           WHEN 'verified' THEN 'cleanup'
       END AS next_op,
       r.content_ref,
       r.marked_by,
       r.marked_at,
       r.approved_by,
       r.approved_at,
       r.cut_by,
       r.cut_at,
       r.cut_target,
       r.verified_by,
       r.verified_at,
       r.cleaned_by,
       r.cleaned_at,
       GREATEST(r.marked_at, r.approved_at, r.cut_at, r.verified_at, r.cleaned_at)
           AS last_changed_at
  FROM iu_core.iu_staging_record AS r;
COMMENT ON VIEW conveyor.v_iu_staging_record IS
    'Staging records with their status, the next operation (NULL once cleaned) and who did each step when';

CREATE VIEW conveyor.v_event_outbox_cursor_lag AS
SELECT c.consumer,
       c.last_txid,
       c.last_id,
       c.events_read,
       c.updated_at,
       lag.lag_events,
       lag.oldest_unread_at
  FROM conveyor.event_outbox_cursor AS c
 CROSS JOIN LATERAL (
       SELECT count(*) AS lag_events,
              min(eo.created_at) AS oldest_unread_at
         FROM conveyor.event_outbox AS eo
        WHERE (eo.txid, eo.id) > (c.last_txid, c.last_id)
          AND eo.txid < conveyor.fn_outbox_horizon()
       ) AS lag;
COMMENT ON VIEW conveyor.v_event_outbox_cursor_lag IS
    'Per outbox consumer: its cursor and the events readable after it (lag_events, oldest_unread_at); events of still-running transactions are not counted yet';

CREATE VIEW conveyor.v_iu_outbound_worker AS
SELECT w.name,
       w.consumer,
       w.sink,
       w.cadence_seconds,
       w.enabled,
       w.last_run_at,
       w.last_delivered,
       now() - w.last_run_at AS since_last_run,
       l.lag_events,
       l.oldest_unread_at
  FROM conveyor.iu_outbound_worker AS w
  LEFT JOIN conveyor.v_event_outbox_cursor_lag AS l ON l.consumer = w.consumer;
COMMENT ON VIEW conveyor.v_iu_outbound_worker IS
    'Outbound workers with their liveness stamp (last_run_at, since_last_run) and outbox lag';

GRANT SELECT ON conveyor.v_iu_staging_record, conveyor.v_event_outbox_cursor_lag,
    conveyor.v_iu_outbound_worker TO conveyor_admin, conveyor_reader;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
