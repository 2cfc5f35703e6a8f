-- The bills of sql/customer_features.sql (its FROM placeholder) with one more bill that is
-- not stored: the stored bills, less one with the same key (company_id,
-- payment_number, installment) - the loader upserts on that key, so the new
-- bill replaces it - plus one row made of the bind parameters x_<column>.
-- Nothing is written.  Used by the HTTP service's POST /v1/customer/predict
-- (payer_scoring.features.extract_customer_features).
(
    SELECT stored.company_id, stored.customer_id, stored.payment_number, stored.installment, stored.installment_count,
           stored.issue_date_dte, stored.original_due_date_dte, stored.due_date_dte, stored.paid_at_dte,
           stored.payment_method, stored.payment_status, stored.billing_amount, stored.by_mail, stored.by_whatsapp
    FROM payments stored
    WHERE NOT (stored.company_id = CAST(:x_company_id AS text)
               AND stored.payment_number = CAST(:x_payment_number AS text)
               AND stored.installment = CAST(:x_installment AS text))
    UNION ALL
    SELECT CAST(:x_company_id AS text), CAST(:x_customer_id AS text), CAST(:x_payment_number AS text),
           CAST(:x_installment AS text),
           CAST(split_part(CAST(:x_installment AS text), '/', 2) AS integer),  -- as payments.installment_count
           CAST(:x_issue_date_dte AS date), CAST(:x_original_due_date_dte AS date),
           CAST(:x_due_date_dte AS date), CAST(:x_paid_at_dte AS date),
           CAST(:x_payment_method AS text), CAST(:x_payment_status AS text),
           CAST(:x_billing_amount AS numeric(16, 2)),
           CAST(:x_by_mail AS boolean), CAST(:x_by_whatsapp AS boolean)
)
