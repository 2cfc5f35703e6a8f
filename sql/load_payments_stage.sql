-- Staging table for one payments file load (scope: the load's transaction).
-- Same column types as payments but no constraints, so every parsed row of the
-- file can be COPYed in before duplicates are resolved.  Used by
-- payer_scoring/loading.py; column order = loading.STAGE_COLUMNS.
CREATE TEMP TABLE payments_stage ON COMMIT DROP AS
SELECT
    company_id, company_name, company_document, company_trade_name,
    customer_id, customer_name, customer_trade_name, parent_type,
    parent_id, payment_number, issue_date_dte, original_due_date_dte,
    due_date_dte, paid_at_dte, issue_at_tsmp, original_due_date_tsmp,
    due_date_tsmp, paid_at_tsmp, payment_method, payment_status,
    paid_amount, billing_amount, payment_amount, installment,
    payment_provider, discount_before_payment, discount_before_payment_due_date, description,
    qrcode_number, os_code, os_identifier, by_mail,
    by_whatsapp, fees, fine, paid_at,
    paid_method, manual, billing_number, source_file,
    source_line
FROM payments
WITH NO DATA
