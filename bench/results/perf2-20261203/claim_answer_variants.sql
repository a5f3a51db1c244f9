-- variants of the claim answer, measured in one transaction each (rolled back)
CREATE OR REPLACE FUNCTION conveyor.x_claim(variant int, batch int) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, conveyor, pg_temp AS $$
DECLARE v_jobs jsonb; v_n int;
BEGIN
  IF variant = 0 THEN RETURN fn_job_claim(worker => 'w', kinds => ARRAY['bench.noop'], batch => batch); END IF;
  WITH picked AS (
        SELECT jq.id FROM job_queue AS jq
         WHERE jq.status = 'queued' AND jq.queue = 'default' AND jq.run_at <= now()
         ORDER BY jq.priority DESC, jq.run_at, jq.id LIMIT batch FOR UPDATE OF jq SKIP LOCKED
  ), claimed AS (
        UPDATE job_queue AS jq
           SET status = 'in_progress', attempts = jq.attempts + 1, lease_token = gen_random_uuid(),
               leased_by = 'w', lease_expires_at = now() + make_interval(secs => 60), started_at = now()
          FROM picked AS p WHERE jq.id = p.id
        RETURNING jq.id, jq.queue, jq.kind, jq.payload, jq.priority, jq.attempts, jq.max_attempts,
                  jq.lease_token, jq.lease_expires_at, jq.run_at, jq.created_at
  )
  SELECT CASE variant
     WHEN 1 THEN (SELECT jsonb_build_object('n', count(*)) FROM claimed)
     WHEN 2 THEN (SELECT jsonb_agg(jsonb_build_object('job_id', c.id, 'queue', c.queue, 'kind', c.kind, 'payload', c.payload,
               'priority', c.priority, 'attempts', c.attempts, 'max_attempts', c.max_attempts, 'lease_token', c.lease_token,
               'lease_expires_at', c.lease_expires_at, 'run_at', c.run_at, 'created_at', c.created_at)) FROM claimed AS c)
     WHEN 3 THEN (SELECT jsonb_agg(to_jsonb(c)) FROM claimed AS c)
     WHEN 4 THEN (SELECT json_agg(json_build_object('job_id', c.id, 'queue', c.queue, 'kind', c.kind, 'payload', c.payload,
               'priority', c.priority, 'attempts', c.attempts, 'max_attempts', c.max_attempts, 'lease_token', c.lease_token,
               'lease_expires_at', c.lease_expires_at, 'run_at', c.run_at, 'created_at', c.created_at))::jsonb FROM claimed AS c)
     WHEN 5 THEN (SELECT jsonb_build_object('ids', jsonb_agg(c.id), 'tokens', jsonb_agg(c.lease_token), 'payloads', jsonb_agg(c.payload)) FROM claimed AS c)
     WHEN 6 THEN (SELECT jsonb_agg(jsonb_build_array(c.id, c.queue, c.kind, c.payload, c.priority, c.attempts, c.max_attempts, c.lease_token, c.lease_expires_at, c.run_at, c.created_at)) FROM claimed AS c)
  END INTO v_jobs;
  RETURN v_jobs;
END $$;
