-- Map raw Online Retail rows (temp table online_retail_raw, filled by the caller)
-- into personalize.products, personalize.customers and purchase interactions.
--
-- Each raw row is classified by the first rule it meets:
--   no_customer           CustomerID is empty (guest checkout)
--   cancellation          InvoiceNo starts with C
--   non_product           StockCode (upper-cased) is not 5 digits and up to 3 letters:
--                         POST, DOT, M, C2, D, S, BANK CHARGES, AMAZONFEE, gift vouchers, ...
--   non_positive_quantity Quantity <= 0 on a normal invoice (stock adjustments)
--   non_positive_price    UnitPrice <= 0 (free samples, bad debt write-offs)
--   unparsable            a field that does not parse (none in the published file)
--   kept                  becomes one 'purchase' interaction
-- Products are every valid stock code seen on any row (guest rows too): name is the
-- most frequent description, price the latest positive unit price. Customers are every
-- CustomerID seen, country the most frequent one. Dates are Europe/London local time.
\set ON_ERROR_STOP on

-- dates are parsed once per distinct string; one that does not parse (2011-02-30) is NULL
CREATE FUNCTION pg_temp.online_retail_ts(s text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
    RETURN s::timestamp AT TIME ZONE 'Europe/London';
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RETURN NULL;
END $f$;
CREATE TEMP TABLE online_retail_dates AS
SELECT d.invoice_date, CASE WHEN d.invoice_date ~ '^\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?$'
                            THEN pg_temp.online_retail_ts(d.invoice_date) END AS ts
FROM (SELECT DISTINCT invoice_date FROM online_retail_raw) d;

CREATE TEMP TABLE online_retail_rows AS
SELECT r.*,
       CASE
           WHEN coalesce(r.customer_id, '') = '' THEN 'no_customer'
           WHEN r.invoice_no LIKE 'C%' THEN 'cancellation'
           WHEN r.sku !~ '^[0-9]{5}[A-Z]{0,3}$' THEN 'non_product'
           WHEN r.qty IS NULL OR r.price IS NULL OR r.ts IS NULL OR r.cust IS NULL THEN 'unparsable'
           WHEN r.qty <= 0 THEN 'non_positive_quantity'
           WHEN r.price <= 0 THEN 'non_positive_price'
           ELSE 'kept'
       END AS rule
FROM (
    SELECT invoice_no, upper(btrim(stock_code)) AS sku, nullif(btrim(description), '') AS description,
           CASE WHEN quantity ~ '^-?[0-9]{1,9}$' THEN quantity::integer END AS qty,
           CASE WHEN unit_price ~ '^-?[0-9]+(\.[0-9]+)?$' THEN unit_price::numeric END AS price,
           d.ts,
           CASE WHEN customer_id ~ '^[0-9]{1,15}(\.0+)?$' THEN split_part(customer_id, '.', 1)::bigint END AS cust,
           nullif(btrim(country), '') AS country,
           customer_id
    FROM online_retail_raw raw
    LEFT JOIN online_retail_dates d ON d.invoice_date = raw.invoice_date
) r;

\echo 'loader: products'
WITH valid AS (
    SELECT sku, description, price, ts FROM online_retail_rows
    WHERE sku ~ '^[0-9]{5}[A-Z]{0,3}$'
), names AS (
    SELECT DISTINCT ON (sku) sku, description
    FROM (SELECT sku, description, count(*) AS n FROM valid WHERE description IS NOT NULL GROUP BY 1, 2) d
    ORDER BY sku, n DESC, description COLLATE "C"
), prices AS (
    SELECT DISTINCT ON (sku) sku, price
    FROM valid WHERE price > 0 AND price < 1e10
    ORDER BY sku, ts DESC, price
), skus AS (
    SELECT sku, min(ts) AS first_seen FROM valid GROUP BY sku
), base AS (
    SELECT coalesce(max(product_id), 0) AS base FROM personalize.products
)
INSERT INTO personalize.products (product_id, sku, name, price, attributes, created_at)
SELECT base.base + row_number() OVER (ORDER BY s.sku COLLATE "C"),
       s.sku, coalesce(n.description, 'stock code ' || s.sku), p.price,
       jsonb_build_object('source', 'online-retail'), coalesce(s.first_seen, now())
FROM skus s CROSS JOIN base
LEFT JOIN names n USING (sku)
LEFT JOIN prices p USING (sku)
ON CONFLICT (sku) DO NOTHING;

\echo 'loader: customers'
INSERT INTO personalize.customers (customer_id, country, created_at)
SELECT DISTINCT ON (cust) cust, country, first_seen
FROM (SELECT cust, country, count(*) AS n, min(min(ts)) OVER (PARTITION BY cust) AS first_seen
      FROM online_retail_rows WHERE cust IS NOT NULL GROUP BY cust, country) c
ORDER BY cust, n DESC, country COLLATE "C"
ON CONFLICT (customer_id) DO NOTHING;

\echo 'loader: purchases'
INSERT INTO personalize.interactions (customer_id, product_id, event_type, quantity, occurred_at)
SELECT r.cust, p.product_id, 'purchase', r.qty, r.ts
FROM online_retail_rows r JOIN personalize.products p ON p.sku = r.sku
WHERE r.rule = 'kept'
ORDER BY r.ts, r.invoice_no, r.sku;

\echo 'loader: rows kept and skipped, by rule'
SELECT rule, count(*) AS rows FROM online_retail_rows GROUP BY rule ORDER BY rule COLLATE "C";

DROP TABLE online_retail_rows;
DROP TABLE online_retail_dates;
