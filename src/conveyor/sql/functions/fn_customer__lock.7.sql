-- fn_customer__lock: lock one customer_message row (FOR UPDATE) and return it, or a row of NULLs
-- when there is none. Every function that changes a message's state starts here, so begin,
-- approve, edit, revoke, reject and reconcile on one message are serialised.
CREATE OR REPLACE FUNCTION conveyor.fn_customer__lock(message_id bigint)
RETURNS conveyor.customer_message
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, conveyor, pg_temp
AS $$
DECLARE
    v_row customer_message;
BEGIN
    SELECT cm.* INTO v_row
      FROM customer_message AS cm
     WHERE cm.id = fn_customer__lock.message_id
       FOR UPDATE;
    RETURN v_row;
END;
$$;
REVOKE ALL ON FUNCTION conveyor.fn_customer__lock(bigint) FROM PUBLIC;
COMMENT ON FUNCTION conveyor.fn_customer__lock(bigint) IS
    'Private: lock a customer_message row FOR UPDATE and return it (all NULL when missing)';
