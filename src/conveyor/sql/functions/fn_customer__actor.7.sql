-- fn_customer__actor: private helper of the person's calls (approve, edit, revoke, reject,
-- reconcile): the actor is required, at most 255 bytes, and recorded with what they did. Raises
-- 22023 naming the public function fn, with hint saying who is meant; returns the actor.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__actor(fn text, actor text, hint text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
BEGIN
    IF nullif(actor, '') IS NULL OR octet_length(actor) > 255 THEN
        RAISE EXCEPTION '%: actor is required (at most 255 bytes)', fn
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    RETURN actor;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__actor(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__actor(text, text, text) IS
    'Private: check the actor of a person''s call on a customer message (required, at most 255 bytes; SQLSTATE 22023)';
