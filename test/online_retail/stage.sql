-- Raw Online Retail rows, as text, exactly as the CSV has them (see map.sql).
-- The whole load is one transaction (test/load_online_retail.sh runs psql -1): the lock keeps
-- a second loader out until this one is done, and the check refuses before reading the file.
\set ON_ERROR_STOP on
LOCK TABLE personalize.interactions IN SHARE ROW EXCLUSIVE MODE;
DO $$
BEGIN
    IF EXISTS (SELECT FROM personalize.interactions) THEN
        RAISE EXCEPTION 'personalize.interactions is not empty'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The Online Retail loader appends the whole file and would double what is there.',
                  HINT = 'Load into a fresh database, or TRUNCATE personalize.interactions first.';
    END IF;
END $$;
CREATE TEMP TABLE online_retail_raw (
    invoice_no   text,
    stock_code   text,
    description  text,
    quantity     text,
    invoice_date text,
    unit_price   text,
    customer_id  text,
    country      text
);
