-- fn_mot__template_guard: trigger function of mot_template_guard_trg. Every row inserted into
-- mot_template, by fn_mot_template_register or directly (data files), passes
-- fn_mot__template_problem or the insert fails with SQLSTATE 22023 naming the step, so nothing
-- is written. A version is immutable: an UPDATE may change the description only (a change of
-- steps is a new version, so every workflow keeps the graph it was emitted from).
CREATE OR REPLACE FUNCTION conveyor.fn_mot__template_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_problem text[];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.name IS DISTINCT FROM OLD.name OR NEW.version IS DISTINCT FROM OLD.version
           OR NEW.steps IS DISTINCT FROM OLD.steps THEN
            RAISE EXCEPTION 'mot_template: version % of % is immutable', OLD.version, OLD.name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Register the changed steps as a new version: SELECT conveyor.fn_mot_template_register(name => …, steps => …).';
        END IF;
        RETURN NEW;
    END IF;
    v_problem := fn_mot__template_problem(NEW.steps);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'mot_template %: %', NEW.name,
                        CASE WHEN v_problem[1] = '(steps)' THEN 'steps ' ELSE 'step ' || v_problem[1] || ': ' END
                        || v_problem[2]
            USING ERRCODE = 'invalid_parameter_value', HINT = v_problem[3];
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_mot__template_guard() FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_mot__template_guard() IS
    'Private trigger function: validates every new mot_template row (fn_mot__template_problem) and keeps a version''s steps immutable.';
