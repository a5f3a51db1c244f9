-- fn_iu_auto_instantiate_from_event: apply one iu.template.instance_auto_composed event, i.e.
-- create the template instance its payload {template, instance_key, params} describes.
-- Idempotent twice over: per event (source_event_id is unique) and per instance
-- ((template, instance_key) is unique); a repeat answers ok with already:true and the existing
-- instance. Events it cannot apply are refused, never raised, so a consumer can step past
-- them: event_not_found, wrong_event_type, invalid_payload (with the offending field).
-- Phase 4 calls this same function from dispatch; it must stay a one-argument function.
CREATE OR REPLACE FUNCTION conveyor.fn_iu_auto_instantiate_from_event(event_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_event    record;
    v_template text;
    v_key      text;
    v_params   jsonb;
    v_instance record;
BEGIN
    IF fn_iu_auto_instantiate_from_event.event_id IS NULL THEN
        RAISE EXCEPTION 'fn_iu_auto_instantiate_from_event: event_id is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id of an iu.template.instance_auto_composed event.';
    END IF;

    SELECT eo.id, eo.event_type, eo.payload, eo.source INTO v_event
      FROM event_outbox AS eo
     WHERE eo.id = fn_iu_auto_instantiate_from_event.event_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'event_not_found',
                                  'event_id', fn_iu_auto_instantiate_from_event.event_id);
    END IF;
    IF v_event.event_type <> 'iu.template.instance_auto_composed' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'wrong_event_type',
                                  'event_id', v_event.id, 'event_type', v_event.event_type);
    END IF;

    SELECT ti.id, ti.source_event_id INTO v_instance
      FROM iu_template_instance AS ti
     WHERE ti.source_event_id = v_event.id;
    IF FOUND THEN
        RETURN jsonb_build_object('ok', true, 'already', true, 'event_id', v_event.id,
                                  'instance_id', v_instance.id,
                                  'source_event_id', v_instance.source_event_id);
    END IF;

    IF jsonb_typeof(v_event.payload -> 'template') IS DISTINCT FROM 'string'
       OR btrim(v_event.payload ->> 'template') = '' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'invalid_payload',
                                  'event_id', v_event.id, 'field', 'template');
    END IF;
    IF jsonb_typeof(v_event.payload -> 'instance_key') IS DISTINCT FROM 'string'
       OR btrim(v_event.payload ->> 'instance_key') = '' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'invalid_payload',
                                  'event_id', v_event.id, 'field', 'instance_key');
    END IF;
    v_params := COALESCE(NULLIF(v_event.payload -> 'params', 'null'::jsonb), '{}'::jsonb);
    IF jsonb_typeof(v_params) <> 'object' THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'invalid_payload',
                                  'event_id', v_event.id, 'field', 'params');
    END IF;
    v_template := v_event.payload ->> 'template';
    v_key := v_event.payload ->> 'instance_key';

    INSERT INTO iu_template_instance AS ti
           (template, instance_key, params, source_event_id, created_by)
    VALUES (v_template, v_key, v_params, v_event.id,
            COALESCE(v_event.source, session_user))
    ON CONFLICT DO NOTHING
    RETURNING ti.id, ti.source_event_id INTO v_instance;
    IF v_instance.id IS NOT NULL THEN
        RETURN jsonb_build_object('ok', true, 'already', false, 'event_id', v_event.id,
                                  'instance_id', v_instance.id, 'template', v_template,
                                  'instance_key', v_key);
    END IF;

    -- Lost to an existing instance: the same event applied concurrently, or an earlier event
    -- that composed the same (template, instance_key).
    SELECT ti.id, ti.source_event_id INTO v_instance
      FROM iu_template_instance AS ti
     WHERE ti.source_event_id = v_event.id
        OR (ti.template = v_template AND ti.instance_key = v_key)
     ORDER BY ti.source_event_id = v_event.id DESC
     LIMIT 1;
    RETURN jsonb_build_object('ok', true, 'already', true, 'event_id', v_event.id,
                              'instance_id', v_instance.id,
                              'source_event_id', v_instance.source_event_id);
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_iu_auto_instantiate_from_event(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor.fn_iu_auto_instantiate_from_event(bigint)
    TO conveyor_admin, conveyor_worker;
COMMENT ON FUNCTION conveyor.fn_iu_auto_instantiate_from_event(bigint) IS
    'Create the template instance an iu.template.instance_auto_composed event describes (idempotent per event and per (template, instance_key)). Answer {ok, already, event_id, instance_id, …}; refusals event_not_found, wrong_event_type, invalid_payload (field). Example: SELECT conveyor.fn_iu_auto_instantiate_from_event(42)';
