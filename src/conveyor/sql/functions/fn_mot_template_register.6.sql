-- fn_mot_template_register: store steps as the next version of template name (1 for a new
-- name). Registering the steps the latest version already has changes nothing and answers that
-- version (created false), so a deploy script may register on every start. Versions are never
-- changed afterwards (mot_template_guard_trg). Bad steps raise SQLSTATE 22023 naming the step
-- (the guard trigger), and nothing is written. Registers of one name serialize on a
-- transaction-scoped advisory lock, so two at once get consecutive versions. Not gated: a
-- template is configuration; emitting it is what workflow.mot.enabled switches.
CREATE OR REPLACE FUNCTION conveyor.fn_mot_template_register(
    name        text,
    steps       jsonb,
    description text DEFAULT NULL,
    created_by  text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_latest  record;
    v_version integer;
BEGIN
    IF fn_mot_template_register.name IS NULL
       OR fn_mot_template_register.name !~ '^[a-z0-9][a-z0-9_.-]{0,127}$' THEN
        RAISE EXCEPTION 'fn_mot_template_register: name % is not a template name',
                        quote_nullable(left(fn_mot_template_register.name, 64))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A template name is 1..128 of a-z 0-9 _ . - starting with a letter or digit, e.g. staging.cut_pipeline.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('conveyor.mot_template:' || fn_mot_template_register.name, 0));

    SELECT mt.version, mt.steps INTO v_latest
      FROM mot_template AS mt
     WHERE mt.name = fn_mot_template_register.name
     ORDER BY mt.version DESC
     LIMIT 1;
    IF FOUND AND v_latest.steps = fn_mot_template_register.steps THEN
        RETURN jsonb_build_object('ok', true, 'template', fn_mot_template_register.name,
                                  'version', v_latest.version, 'created', false,
                                  'steps', jsonb_array_length(v_latest.steps));
    END IF;
    v_version := coalesce(v_latest.version, 0) + 1;
    INSERT INTO mot_template AS mt (name, version, steps, description, created_by)
    VALUES (fn_mot_template_register.name, v_version, fn_mot_template_register.steps,
            coalesce(fn_mot_template_register.description, ''),
            coalesce(nullif(fn_mot_template_register.created_by, ''), session_user));
    RETURN jsonb_build_object('ok', true, 'template', fn_mot_template_register.name,
                              'version', v_version, 'created', true,
                              'steps', jsonb_array_length(fn_mot_template_register.steps));
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_mot_template_register(text, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_mot_template_register(text, jsonb, text, text) TO conveyor_admin;
COMMENT ON FUNCTION conveyor.fn_mot_template_register(text, jsonb, text, text) IS
    'Store steps as the next version of MOT template name. → {"ok":true,"template","version","created":true,"steps":n}; the same steps as the latest version → that version with "created":false. Bad steps (duplicate key, unknown parent, cycle, unknown or mot executor, bad policy…) → SQLSTATE 22023 naming the step, nothing written. Not gated. Example: SELECT conveyor.fn_mot_template_register(''demo.pair'', ''[{"key":"a","kind":"demo.echo","executor":"dot"},{"key":"b","kind":"demo.echo","executor":"dot","parents":["a"]}]'');';
