-- Bills that failed a row-level expectation in a scoring run.  They are left
-- out of that run's features; the source table `payments` is never modified.
CREATE TABLE quarantined_payments (
    flow_run_id     text        NOT NULL,
    as_of_date      date        NOT NULL,
    company_id      text        NOT NULL,
    payment_number  text        NOT NULL,
    installment     text        NOT NULL,
    reason          text        NOT NULL,   -- the expectation that failed, e.g. "billing_amount >= 0"
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_run_id, company_id, payment_number, installment, reason)
);
CREATE INDEX quarantined_payments_bill_idx ON quarantined_payments (company_id, payment_number, installment);
