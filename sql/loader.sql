-- The Online Retail loader's mapping rules (test/online_retail/map.sql) on a
-- small crafted file, one row per rule: no customer, cancellation (C invoice),
-- non-product codes, negative quantity, zero price, a customer id that does not
-- parse; lower-case stock codes merge with upper-case ones, a quoted comma stays
-- in the name, 17850.0 is customer 17850, a customer seen in two countries gets
-- the more frequent one (ties: first in byte order), dates are London local time.
-- map.sql refuses to run unless personalize.interactions is empty. It all runs
-- in one transaction that is rolled back, so the tables are empty again after.
-- pg_regress feeds this file to psql on stdin, so \i paths are relative to the
-- directory make runs in: the top of the repository.
SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.interactions) AS interactions;
BEGIN;
\set ECHO none
\i test/online_retail/stage.sql
\set ECHO all
COPY online_retail_raw FROM stdin WITH (FORMAT csv, HEADER true);
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,"HAND WARMER UNION JACK, RED",6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom
536367,85123a,WHITE HANGING HEART T-LIGHT HOLDER,2,2011-06-15 10:00:00,2.95,13047.0,United Kingdom
536368,71053,WHITE METAL LANTERN,1,2010-12-02 10:00:00,3.39,,United Kingdom
C536369,71053,WHITE METAL LANTERN,-1,2010-12-03 09:00:00,3.39,17850.0,United Kingdom
536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.00,12583.0,France
536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583.0,France
536371,M,Manual,1,2010-12-05 10:00:00,0.85,12583.0,France
536372,BANK CHARGES,Bank Charges,1,2010-12-06 10:00:00,15.00,12583.0,France
536373,gift_0001_10,Dotcomgiftshop Gift Voucher 10.00,1,2010-12-07 10:00:00,8.51,13047.0,United Kingdom
536374,22728,ALARM CLOCK BAKELIKE PINK,-12,2010-12-08 10:00:00,3.75,13047.0,United Kingdom
536375,22633,"HAND WARMER UNION JACK, RED",10,2010-12-09 10:00:00,0,13047.0,United Kingdom
536376,85123A,wrongly marked,1,2010-12-10 10:00:00,2.55,,United Kingdom
536377,84029G,KNITTED UNION FLAG HOT WATER BOTTLE,6,2011-01-10 09:00:00,3.39,13047.0,Germany
536378,22728,ALARM CLOCK BAKELIKE PINK,4,2011-02-01 12:00:00,3.75,14000.0,Norway
536379,22728,ALARM CLOCK BAKELIKE PINK,2,2011-03-01 12:00:00,3.95,14000,EIRE
536380,71053,WHITE METAL LANTERN,6,2011-04-01 10:00:00,3.39,17850.5,United Kingdom
C536381,21730,GLASS STAR FROSTED T-LIGHT HOLDER,-2,2011-05-01 10:00:00,4.25,17850.0,United Kingdom
536382,90214Z,,1,2011-05-02 10:00:00,1.00,,United Kingdom
\.
SELECT count(*) AS raw_rows FROM online_retail_raw;
-- the loader prints its progress and the rows kept and skipped, by rule
\set ECHO none
\i test/online_retail/map.sql
\set ON_ERROR_STOP off
\set ECHO all

-- products: every valid stock code on any row (guest and cancelled rows too),
-- upper-cased, ids in stock-code order; name the most frequent description,
-- price the latest positive one, created_at when first seen
SELECT product_id, sku, name, category, price, active, attributes,
       to_char(created_at AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI') AS first_seen_london
FROM personalize.products ORDER BY product_id;
-- customers: every customer id that parses, the most frequent country
SELECT customer_id, country, attributes,
       to_char(created_at AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI') AS first_seen_london
FROM personalize.customers ORDER BY customer_id;
-- interactions: one purchase per kept row; London times, June in summer time
-- (UTC+1); inserted in time order (then invoice, stock code), so ids follow time
SELECT row_number() OVER (ORDER BY i.interaction_id) AS seq, i.customer_id, p.sku, i.event_type, i.quantity,
       to_char(i.occurred_at AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI') AS london,
       to_char(i.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS utc
FROM personalize.interactions i JOIN personalize.products p USING (product_id)
ORDER BY seq;
-- the loader's working table is gone
SELECT to_regclass('pg_temp.online_retail_rows') IS NULL AS work_table_dropped;
ROLLBACK;

SELECT (SELECT count(*) FROM personalize.products) AS products,
       (SELECT count(*) FROM personalize.customers) AS customers,
       (SELECT count(*) FROM personalize.interactions) AS interactions;
