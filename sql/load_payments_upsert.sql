-- Upsert the staged file into payments on the bill key; returns the counts
-- (inserted = new bills, updated = bills that were already there).
-- A bill key repeated inside the file: the later line (highest source_line)
-- wins; the earlier ones are listed by load_payments_duplicates.sql.
WITH upserted AS (
    INSERT INTO payments (
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
    )
    SELECT DISTINCT ON (company_id, payment_number, installment)
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
    FROM payments_stage
    ORDER BY company_id, payment_number, installment, source_line DESC
    ON CONFLICT (company_id, payment_number, installment) DO UPDATE SET
        company_name = EXCLUDED.company_name, company_document = EXCLUDED.company_document,
        company_trade_name = EXCLUDED.company_trade_name, customer_id = EXCLUDED.customer_id,
        customer_name = EXCLUDED.customer_name, customer_trade_name = EXCLUDED.customer_trade_name,
        parent_type = EXCLUDED.parent_type, parent_id = EXCLUDED.parent_id,
        issue_date_dte = EXCLUDED.issue_date_dte, original_due_date_dte = EXCLUDED.original_due_date_dte,
        due_date_dte = EXCLUDED.due_date_dte, paid_at_dte = EXCLUDED.paid_at_dte,
        issue_at_tsmp = EXCLUDED.issue_at_tsmp, original_due_date_tsmp = EXCLUDED.original_due_date_tsmp,
        due_date_tsmp = EXCLUDED.due_date_tsmp, paid_at_tsmp = EXCLUDED.paid_at_tsmp,
        payment_method = EXCLUDED.payment_method, payment_status = EXCLUDED.payment_status,
        paid_amount = EXCLUDED.paid_amount, billing_amount = EXCLUDED.billing_amount,
        payment_amount = EXCLUDED.payment_amount, payment_provider = EXCLUDED.payment_provider,
        discount_before_payment = EXCLUDED.discount_before_payment, discount_before_payment_due_date = EXCLUDED.discount_before_payment_due_date,
        description = EXCLUDED.description, qrcode_number = EXCLUDED.qrcode_number,
        os_code = EXCLUDED.os_code, os_identifier = EXCLUDED.os_identifier,
        by_mail = EXCLUDED.by_mail, by_whatsapp = EXCLUDED.by_whatsapp,
        fees = EXCLUDED.fees, fine = EXCLUDED.fine,
        paid_at = EXCLUDED.paid_at, paid_method = EXCLUDED.paid_method,
        manual = EXCLUDED.manual, billing_number = EXCLUDED.billing_number,
        source_file = EXCLUDED.source_file, source_line = EXCLUDED.source_line,
        loaded_at = now()
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM upserted
