-- Staged lines whose bill key appears again later in the same file: the later
-- line wins (see load_payments_upsert.sql), these are superseded and listed in
-- the rejects report with kind 'duplicate'.  One row per superseded line.
SELECT source_line AS line, company_id, payment_number, installment, kept_line
FROM (
    SELECT source_line, company_id, payment_number, installment,
           max(source_line) OVER (PARTITION BY company_id, payment_number, installment) AS kept_line
    FROM payments_stage
) keyed
WHERE source_line < kept_line
ORDER BY source_line
