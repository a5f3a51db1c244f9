-- fn_customer__sha256: the hex sha256 of a text (UTF-8), the one hash phase 7 uses for bodies,
-- drafts and Message-ID headers, so every caller computes the same value.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__sha256(value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
    SELECT encode(sha256(convert_to(coalesce(value, ''), 'UTF8')), 'hex');
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__sha256(text) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__sha256(text) IS
    'Private: hex sha256 of a text (UTF-8; NULL hashes as the empty string)';
