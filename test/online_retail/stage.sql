-- Raw Online Retail rows, as text, exactly as the CSV has them (see map.sql).
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
