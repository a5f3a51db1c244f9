-- Phase 5 — the MARK/CUT pilot (ROADMAP §7): the first live consumer flow. The operator marks
-- (fn_pilot_mark, with a payload) and approves (iu_core.fn_iu_op_approve); from there the outbox →
-- registry → queue → worker path of phases 1–4 runs CUT, VERIFY_CUT and CLEANUP by itself, the
-- handlers calling iu_core.fn_iu_op_cut / verify_cut / cleanup unchanged. Needs phases 2 and 4.
-- event_outbox and iu_core.iu_staging_* are not touched (the payload lives beside the record, in
-- pilot_staged_payload, because iu_staging_record's definition is frozen by §12).
--
-- One collection is the pilot: pilot.cut.collection (data.up.sql, default 'pilot'). Records of
-- any other collection are never routed (fn_pilot_route) and never cut (fn_pilot__lock).
-- pilot.cut.enabled (default false) gates the three steps; jobs of a switched-off pilot are
-- snoozed, not failed, so nothing is lost and switching it on resumes where each record stood.
--
-- Exactly once per step: each step function writes its effect (the target row, the cleared
-- payload) and the record's transition in the caller's transaction, and the built-in handlers
-- (conveyor.pilot) are transactional, so the same transaction completes the job. A worker that
-- dies before COMMIT leaves nothing; the job's lease expires, the reaper hands it out again, and
-- the retry does the step once. A repeat of a finished step answers already:true.
--
-- Observability: v_iu_staging_record and v_queue_health are extended (the phase 0 and phase 3
-- views are renamed to v_iu_staging_record_base / v_queue_health_base, kept as they are, and the
-- new views select from them; ddl.down.sql drops the new views and renames the old ones back).

-- ---------------------------------------------------------------------------------------------
-- pilot_staged_payload: what the operator staged, beside its iu_staging_record row.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.pilot_staged_payload (
    record_id     bigint      NOT NULL,
    payload       text,
    payload_bytes integer     NOT NULL,
    checksum      text        NOT NULL,
    staged_at     timestamptz NOT NULL DEFAULT now(),
    cleared_at    timestamptz,
    CONSTRAINT pilot_staged_payload_pkey PRIMARY KEY (record_id),
    CONSTRAINT pilot_staged_payload_record_id_fkey
        FOREIGN KEY (record_id) REFERENCES iu_core.iu_staging_record (id),
    CONSTRAINT pilot_staged_payload_cleared_check CHECK ((payload IS NULL) = (cleared_at IS NOT NULL))
);
COMMENT ON TABLE conveyor.pilot_staged_payload IS
    'The pilot''s staged payloads, one per staging record marked with fn_pilot_mark; CLEANUP clears payload and stamps cleared_at (the checksum stays)';
COMMENT ON COLUMN conveyor.pilot_staged_payload.payload IS 'The staged content (text); NULL once cleaned up';
COMMENT ON COLUMN conveyor.pilot_staged_payload.payload_bytes IS 'octet_length of the payload as staged';
COMMENT ON COLUMN conveyor.pilot_staged_payload.checksum IS 'sha256 (hex) of the payload as staged: what VERIFY_CUT compares the target with';

-- ---------------------------------------------------------------------------------------------
-- pilot_cut_target: where CUT writes a record (the pilot's target). One row per record at most.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE conveyor.pilot_cut_target (
    record_id  bigint      NOT NULL,
    collection text        NOT NULL,
    record_key text        NOT NULL,
    payload    text        NOT NULL,
    checksum   text        NOT NULL,
    cut_by     text        NOT NULL,
    job_id     bigint,
    written_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pilot_cut_target_pkey PRIMARY KEY (record_id),
    CONSTRAINT pilot_cut_target_record_id_fkey
        FOREIGN KEY (record_id) REFERENCES iu_core.iu_staging_record (id)
);
COMMENT ON TABLE conveyor.pilot_cut_target IS
    'The pilot''s cut target: the payload of each cut record, written by fn_pilot_cut in the transaction of the cut (the primary key makes a second row for a record impossible)';
COMMENT ON COLUMN conveyor.pilot_cut_target.checksum IS 'sha256 (hex) of payload when written';
COMMENT ON COLUMN conveyor.pilot_cut_target.job_id IS 'The staging.cut job that wrote the row (NULL when cut by hand)';

GRANT ALL ON TABLE conveyor.pilot_staged_payload, conveyor.pilot_cut_target TO conveyor_admin;

-- ---------------------------------------------------------------------------------------------
-- Functions.
-- ---------------------------------------------------------------------------------------------
\ir ../../functions/fn_pilot__lock.5.sql
\ir ../../functions/fn_pilot_mark.5.sql
\ir ../../functions/fn_pilot_route.5.sql
\ir ../../functions/fn_pilot_cut.5.sql
\ir ../../functions/fn_pilot_verify_cut.5.sql
\ir ../../functions/fn_pilot_cleanup.5.sql

-- ---------------------------------------------------------------------------------------------
-- v_iu_staging_record: phase 0's columns, then the pilot's: whether the record is in the pilot
-- collection, how long it has waited for its next step, whether that is longer than
-- pilot.cut.stuck_threshold_seconds (stuck), the staged payload's size, and the job carrying
-- its current step (the newest staging.* job for the record).
-- ---------------------------------------------------------------------------------------------
ALTER VIEW conveyor.v_iu_staging_record RENAME TO v_iu_staging_record_base;

CREATE VIEW conveyor.v_iu_staging_record AS
WITH cfg AS MATERIALIZED (
    SELECT (SELECT dc.value #>> '{}' FROM conveyor.dot_config AS dc
             WHERE dc.key = 'pilot.cut.collection') AS collection,
           coalesce((SELECT CASE WHEN jsonb_typeof(dc.value) = 'number' THEN dc.value::numeric END
                       FROM conveyor.dot_config AS dc
                      WHERE dc.key = 'pilot.cut.stuck_threshold_seconds'), 300) AS threshold
)
SELECT b.*,
       b.collection = cfg.collection AS pilot,
       CASE WHEN b.collection = cfg.collection AND b.status IN ('approved', 'cut', 'verified')
            THEN extract(epoch FROM clock_timestamp() - b.last_changed_at)::double precision
       END AS waiting_seconds,
       coalesce(b.collection = cfg.collection AND b.status IN ('approved', 'cut', 'verified')
                AND b.last_changed_at < clock_timestamp() - make_interval(secs => cfg.threshold::double precision),
                false) AS stuck,
       sp.payload_bytes,
       sp.cleared_at AS payload_cleared_at,
       j.id AS step_job_id,
       j.kind AS step_job_kind,
       j.status AS step_job_status,
       j.attempts AS step_job_attempts
  FROM conveyor.v_iu_staging_record_base AS b
 CROSS JOIN cfg
  LEFT JOIN conveyor.pilot_staged_payload AS sp ON sp.record_id = b.id
  LEFT JOIN LATERAL (
       SELECT jq.id, jq.kind, jq.status, jq.attempts
         FROM conveyor.job_queue AS jq
        WHERE b.collection = cfg.collection
          AND jq.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')
          AND (jq.payload ->> 'record_id') = b.id::text
        ORDER BY jq.id DESC
        LIMIT 1) AS j ON true;
COMMENT ON VIEW conveyor.v_iu_staging_record IS
    'Staging records with their status, the next operation (NULL once cleaned) and who did each step when; for the pilot collection also how long the record has waited for its next step, stuck (longer than pilot.cut.stuck_threshold_seconds), the staged payload''s size and the job carrying its step';
GRANT SELECT ON conveyor.v_iu_staging_record TO conveyor_admin, conveyor_reader;

-- Finds the job of a record's step without scanning every job (the view's LATERAL, `staging show`).
CREATE INDEX job_queue_pilot_record_idx ON conveyor.job_queue (((payload ->> 'record_id')), id)
    WHERE kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup');
COMMENT ON INDEX conveyor.job_queue_pilot_record_idx IS
    'Phase 5: the pilot''s step jobs by record_id (v_iu_staging_record, conveyor staging show).';

-- ---------------------------------------------------------------------------------------------
-- v_queue_health: phase 3's rows, plus one row for the pilot (component pilot:<collection>,
-- kind pilot): the pilot's step jobs ready, running, expired and dead-lettered, the dispatch
-- cursor's lag, and the records stuck between steps. status_hint is stale while a record is
-- stuck (silent_since: since when the oldest stuck one has waited), else fresh; so
-- `conveyor health` fails while the pilot is stuck. last_beat_at is the pilot's last step.
-- ---------------------------------------------------------------------------------------------
ALTER VIEW conveyor.v_queue_health RENAME TO v_queue_health_base;

CREATE VIEW conveyor.v_queue_health AS
SELECT b.* FROM conveyor.v_queue_health_base AS b
UNION ALL
SELECT 'pilot:' || coalesce(cfg.collection, '(none)'),
       'pilot',
       NULL::integer,
       cfg.threshold::double precision,
       NULL::timestamptz,
       rec.last_step_at,
       extract(epoch FROM clock_timestamp() - rec.last_step_at)::double precision,
       CASE WHEN rec.stuck > 0 THEN 'stale' ELSE 'fresh' END,
       rec.oldest_stuck_at,
       (SELECT l.lag_events FROM conveyor.v_event_outbox_cursor_lag AS l WHERE l.consumer = 'dispatch'),
       jobs.ready,
       extract(epoch FROM clock_timestamp() - jobs.oldest_ready)::double precision,
       jobs.in_progress,
       jobs.expired,
       (SELECT count(*) FROM conveyor.job_dead_letter AS dl
         WHERE dl.resolved_at IS NULL
           AND dl.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')),
       NULL::double precision,
       NULL::bigint,
       NULL::bigint,
       NULL::bigint,
       NULL::text[],
       NULL::double precision,
       NULL::text
  FROM (SELECT (SELECT dc.value #>> '{}' FROM conveyor.dot_config AS dc
                 WHERE dc.key = 'pilot.cut.collection') AS collection,
               coalesce((SELECT CASE WHEN jsonb_typeof(dc.value) = 'number' THEN dc.value::numeric END
                           FROM conveyor.dot_config AS dc
                          WHERE dc.key = 'pilot.cut.stuck_threshold_seconds'), 300) AS threshold
       ) AS cfg
 CROSS JOIN LATERAL (
       SELECT max(greatest(r.approved_at, r.cut_at, r.verified_at, r.cleaned_at)) AS last_step_at,
              count(*) FILTER (WHERE r.status IN ('approved', 'cut', 'verified')
                                 AND greatest(r.approved_at, r.cut_at, r.verified_at)
                                     < clock_timestamp() - make_interval(secs => cfg.threshold::double precision))
                  AS stuck,
              min(greatest(r.approved_at, r.cut_at, r.verified_at))
                  FILTER (WHERE r.status IN ('approved', 'cut', 'verified')
                            AND greatest(r.approved_at, r.cut_at, r.verified_at)
                                < clock_timestamp() - make_interval(secs => cfg.threshold::double precision))
                  AS oldest_stuck_at
         FROM iu_core.iu_staging_record AS r
        WHERE r.collection = cfg.collection) AS rec
 CROSS JOIN LATERAL (
       SELECT count(*) FILTER (WHERE jq.status = 'queued' AND jq.run_at <= now()) AS ready,
              min(jq.run_at) FILTER (WHERE jq.status = 'queued' AND jq.run_at <= now()) AS oldest_ready,
              count(*) FILTER (WHERE jq.status = 'in_progress') AS in_progress,
              count(*) FILTER (WHERE jq.status = 'in_progress' AND jq.lease_expires_at < clock_timestamp())
                  AS expired
         FROM conveyor.job_queue AS jq
        WHERE jq.kind IN ('staging.cut', 'staging.verify_cut', 'staging.cleanup')
          AND jq.status IN ('queued', 'in_progress')) AS jobs;
COMMENT ON VIEW conveyor.v_queue_health IS
    'One row per live component (phase 3: heartbeat age, status_hint, backlog, leases, dead letters, database signals) plus the pilot''s row pilot:<collection> (phase 5): its step jobs ready / in progress / expired / dead-lettered, the dispatch cursor lag, status_hint stale while a record waits longer than pilot.cut.stuck_threshold_seconds between steps (silent_since: the oldest such wait), last_beat_at: the last step. No payloads.';
GRANT SELECT ON conveyor.v_queue_health TO conveyor_reader, conveyor_admin;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
