-- fn_consumer__validate: trigger function of consumer_registry_validate_trg. Every row written to
-- consumer_registry, by fn_consumer_register or directly (data files), passes fn_consumer__problem
-- or the write fails with SQLSTATE 22023; updated_at is stamped on update.
CREATE OR REPLACE FUNCTION conveyor.fn_consumer__validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_problem text[];
BEGIN
    v_problem := fn_consumer__problem(NEW.consumer, NEW.event_pattern, NEW.action, NEW.job_kind,
                                      NEW.job_queue, NEW.job_executor, NEW.job_priority,
                                      NEW.payload_mapping, NEW.target);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'consumer_registry: % %', v_problem[1], v_problem[2]
            USING ERRCODE = 'invalid_parameter_value', HINT = v_problem[3];
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_consumer__validate() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_consumer__validate() IS
    'Private trigger function: validates every consumer_registry row (fn_consumer__problem) and stamps updated_at.';
