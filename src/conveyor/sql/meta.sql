-- conveyor_meta: the phase runner's own ledger. Created (idempotently) by the runner before any
-- phase runs; it is not part of any phase, so rolling back phase 0 never touches the history.
CREATE SCHEMA IF NOT EXISTS conveyor_meta;
COMMENT ON SCHEMA conveyor_meta IS 'conveyor phase runner ledger: ratifications, applied files, gate runs, objects per phase';

CREATE TABLE IF NOT EXISTS conveyor_meta.phase_state (
    phase       integer PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('applied', 'ddl_applied', 'rolled_back')),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL
);
COMMENT ON TABLE conveyor_meta.phase_state IS 'Current state of each phase that was ever applied (ddl_applied: the data file failed after the DDL committed)';

CREATE TABLE IF NOT EXISTS conveyor_meta.ratification (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phase        integer NOT NULL,
    ratified_by  text NOT NULL,
    note         text,
    ratified_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE conveyor_meta.ratification IS 'Who approved applying a phase, when, with what note; apply needs one newer than the last rollback';

CREATE TABLE IF NOT EXISTS conveyor_meta.ledger (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phase        integer NOT NULL,
    file         text NOT NULL,
    checksum     text NOT NULL,
    applied_by   text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms  numeric NOT NULL
);
COMMENT ON TABLE conveyor_meta.ledger IS 'One row per migration file run (ddl.up, data.up, data.down, ddl.down) with its sha256';

CREATE TABLE IF NOT EXISTS conveyor_meta.gate_run (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phase    integer NOT NULL,
    ran_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    ran_by   text NOT NULL,
    passed   boolean NOT NULL,
    items    jsonb NOT NULL
);
COMMENT ON TABLE conveyor_meta.gate_run IS 'Every verification gate run with its items';

CREATE TABLE IF NOT EXISTS conveyor_meta.phase_object (
    phase        integer NOT NULL,
    object_kind  text NOT NULL,
    object_name  text NOT NULL,
    PRIMARY KEY (phase, object_kind, object_name)
);
COMMENT ON TABLE conveyor_meta.phase_object IS 'Objects each phase created (catalog diff around its ddl.up): the KB report';

CREATE TABLE IF NOT EXISTS conveyor_meta.phase_snapshot (
    phase        integer NOT NULL,
    kind         text NOT NULL,
    value        jsonb,
    captured_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (phase, kind)
);
COMMENT ON TABLE conveyor_meta.phase_snapshot IS 'Values captured just before a phase was applied (e.g. the event_outbox regression queries)';

-- The fixed set of event_outbox queries whose results must not change when a phase is applied
-- (ROADMAP §3.3 "existing event_outbox queries unchanged"). NULL before phase 0 exists.
CREATE OR REPLACE FUNCTION conveyor_meta.fn_outbox_snapshot() RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_result jsonb;
BEGIN
    IF to_regclass('conveyor.event_outbox') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE $q$
        SELECT jsonb_build_object(
            'count', (SELECT count(*) FROM conveyor.event_outbox),
            'max_id', (SELECT max(eo.id) FROM conveyor.event_outbox AS eo),
            'by_type', (SELECT coalesce(jsonb_object_agg(t.event_type, t.n), '{}'::jsonb)
                          FROM (SELECT eo.event_type, count(*) AS n
                                  FROM conveyor.event_outbox AS eo GROUP BY eo.event_type) AS t),
            'rows_md5', (SELECT md5(coalesce(string_agg(
                                  eo.id::text || '|' || eo.event_type || '|' || eo.payload::text,
                                  E'\n' ORDER BY eo.id), ''))
                           FROM conveyor.event_outbox AS eo),
            'columns', (SELECT jsonb_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                         ORDER BY a.attnum)
                          FROM pg_attribute AS a
                         WHERE a.attrelid = 'conveyor.event_outbox'::regclass
                           AND a.attnum > 0 AND NOT a.attisdropped)
        )
    $q$ INTO v_result;
    RETURN v_result;
END;
$$;
COMMENT ON FUNCTION conveyor_meta.fn_outbox_snapshot() IS 'Results of the fixed event_outbox regression queries (count, max id, per-type counts, row checksum, columns)';

-- Down files call this before dropping tables: dropping a table drops its rows, so it refuses
-- unless every table is empty or the caller declared the rows archived (the runner sets
-- conveyor.rollback_rows_archived after `rollback --archive FILE` wrote them out; a psql user who
-- archived them another way may `SET LOCAL conveyor.rollback_rows_archived = on` too).
CREATE OR REPLACE FUNCTION conveyor_meta.fn_assert_empty_for_drop(tables regclass[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table regclass;
    v_has_rows boolean;
BEGIN
    IF current_setting('conveyor.rollback_rows_archived', true) = 'on' THEN
        RETURN;
    END IF;
    FOREACH v_table IN ARRAY tables LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', v_table) INTO v_has_rows;
        IF v_has_rows THEN
            RAISE EXCEPTION 'rollback would drop the rows of %', v_table
                USING ERRCODE = 'object_in_use',
                      HINT = 'Use `conveyor phase rollback N --archive FILE` to write them out first.';
        END IF;
    END LOOP;
END;
$$;
COMMENT ON FUNCTION conveyor_meta.fn_assert_empty_for_drop(regclass[]) IS
    'Raise unless every table is empty or conveyor.rollback_rows_archived is on (down files call it before DROP TABLE)';
