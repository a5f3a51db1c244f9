-- iu_core.fn_iu_op_transition: the one place that moves a staging record one step along
-- marked → approved → cut → verified → cleaned. Internal (no grants); the public
-- fn_iu_op_approve/cut/verify_cut/cleanup are one-line wrappers around it.
-- Rules: the record is locked first; a record already at or past the target status answers
-- ok with already:true and changes nothing (operations are safe to repeat); a record that
-- has not reached the step before the target is refused with invalid_transition; otherwise
-- the status and the step's by/at stamps are written and the route's event is emitted in
-- the same transaction.
CREATE OR REPLACE FUNCTION iu_core.fn_iu_op_transition(
    record_id  bigint,
    actor      text,
    op         text,
    cut_target text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, iu_core, conveyor, pg_temp
AS $$
DECLARE
    v_order    CONSTANT text[] := ARRAY['marked', 'approved', 'cut', 'verified', 'cleaned'];
    v_fn       text := 'fn_iu_op_' || fn_iu_op_transition.op;
    v_from     text;
    v_to       text;
    v_record   iu_core.iu_staging_record%ROWTYPE;
    v_event_id bigint;
BEGIN
    CASE fn_iu_op_transition.op
        WHEN 'approve' THEN v_from := 'marked'; v_to := 'approved';
        WHEN 'cut' THEN v_from := 'approved'; v_to := 'cut';
        WHEN 'verify_cut' THEN v_from := 'cut'; v_to := 'verified';
        WHEN 'cleanup' THEN v_from := 'verified'; v_to := 'cleaned';
        ELSE
            RAISE EXCEPTION 'fn_iu_op_transition: op % is not a staging operation',
                            quote_nullable(fn_iu_op_transition.op)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use approve, cut, verify_cut or cleanup (mark has its own function).';
    END CASE;
    IF fn_iu_op_transition.record_id IS NULL THEN
        RAISE EXCEPTION '%: record_id is required', v_fn
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the id fn_iu_op_mark returned (see conveyor.v_iu_staging_record).';
    END IF;
    IF fn_iu_op_transition.actor IS NULL OR btrim(fn_iu_op_transition.actor) = ''
       OR char_length(fn_iu_op_transition.actor) > 200 THEN
        RAISE EXCEPTION '%: actor must be 1 to 200 characters, got %', v_fn,
                        quote_nullable(left(fn_iu_op_transition.actor, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name who performs the operation, e.g. an operator or worker name.';
    END IF;

    SELECT r.* INTO v_record
      FROM iu_core.iu_staging_record AS r
     WHERE r.id = fn_iu_op_transition.record_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'record_not_found',
                                  'op', fn_iu_op_transition.op,
                                  'record_id', fn_iu_op_transition.record_id);
    END IF;
    IF array_position(v_order, v_record.status) >= array_position(v_order, v_to) THEN
        RETURN jsonb_build_object('ok', true, 'already', true, 'op', fn_iu_op_transition.op,
                                  'record_id', v_record.id, 'status', v_record.status);
    END IF;
    IF v_record.status <> v_from THEN
        RETURN jsonb_build_object('refused', true, 'reason', 'invalid_transition',
                                  'op', fn_iu_op_transition.op, 'record_id', v_record.id,
                                  'status', v_record.status, 'expected', v_from);
    END IF;

    UPDATE iu_core.iu_staging_record AS r
       SET status = v_to,
           approved_by = CASE WHEN v_to = 'approved' THEN fn_iu_op_transition.actor ELSE r.approved_by END,
           approved_at = CASE WHEN v_to = 'approved' THEN now() ELSE r.approved_at END,
           cut_by      = CASE WHEN v_to = 'cut' THEN fn_iu_op_transition.actor ELSE r.cut_by END,
           cut_at      = CASE WHEN v_to = 'cut' THEN now() ELSE r.cut_at END,
           cut_target  = CASE WHEN v_to = 'cut' THEN fn_iu_op_transition.cut_target ELSE r.cut_target END,
           verified_by = CASE WHEN v_to = 'verified' THEN fn_iu_op_transition.actor ELSE r.verified_by END,
           verified_at = CASE WHEN v_to = 'verified' THEN now() ELSE r.verified_at END,
           cleaned_by  = CASE WHEN v_to = 'cleaned' THEN fn_iu_op_transition.actor ELSE r.cleaned_by END,
           cleaned_at  = CASE WHEN v_to = 'cleaned' THEN now() ELSE r.cleaned_at END
     WHERE r.id = v_record.id;

    v_event_id := iu_core.fn_iu_op_emit(op => fn_iu_op_transition.op, record_id => v_record.id,
                                        collection => v_record.collection,
                                        record_key => v_record.record_key,
                                        actor => fn_iu_op_transition.actor);
    RETURN jsonb_build_object('ok', true, 'already', false, 'op', fn_iu_op_transition.op,
                              'record_id', v_record.id, 'collection', v_record.collection,
                              'record_key', v_record.record_key, 'status', v_to,
                              'event_id', v_event_id);
END;
$$;
REVOKE ALL ON FUNCTION iu_core.fn_iu_op_transition(bigint, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION iu_core.fn_iu_op_transition(bigint, text, text, text) IS
    'Private: move a staging record one step (approve, cut, verify_cut, cleanup), stamp it and emit the route''s event; behind fn_iu_op_approve/cut/verify_cut/cleanup';
