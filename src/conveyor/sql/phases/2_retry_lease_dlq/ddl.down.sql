-- Undo ddl.up.sql: put the phase-1 fn_job__retry_seconds back (its .1 file, so the body and
-- comment are exactly phase 1's), then drop what phase 2 created, in reverse dependency order.
-- Rows the phase-2 functions wrote stay valid phase-1 rows (queued jobs, dead letters with
-- reason lease_expired, resolved dead letters), so nothing needs archiving.
-- Roles are cluster-wide and belong to phase 0; no down file ever drops them.
\ir ../../functions/fn_job__retry_seconds.1.sql

DROP FUNCTION conveyor.fn_job_prune(integer);
DROP FUNCTION conveyor.fn_job_dead_letter_replay(bigint, text, text, integer, text);
DROP FUNCTION conveyor.fn_job_lease_reaper(integer);
DROP FUNCTION conveyor.fn_job_backoff_seconds(integer, numeric, numeric, numeric);

DROP INDEX conveyor.job_dead_letter_resolved_idx;

-- Every function and view this file created belongs to conveyor_admin (see owner.sql).
\ir ../../owner.sql
