-- Source tables in the billing platform's export layout.
--
-- payments: the 39 columns of the payments export, typed, plus three load
-- bookkeeping columns (source_file, source_line, loaded_at).
-- Bill key: (company_id, payment_number, installment).  payment_number alone
-- repeats (7 duplicates in the reference export), so the key adds the company
-- and the instalment; re-loading a file upserts on it.
-- discount_before_payment_due_date arrives as epoch seconds (0 = none) and is
-- stored as a date (NULL when 0).  `manual` is 100% empty in the export and
-- kept as nullable text.

CREATE TABLE payments (
    company_id                       text        NOT NULL,
    company_name                     text,
    company_document                 text,
    company_trade_name               text,
    customer_id                      text        NOT NULL,
    customer_name                    text,
    customer_trade_name              text,
    parent_type                      text,
    parent_id                        text,
    payment_number                   text        NOT NULL,
    issue_date_dte                   date        NOT NULL,
    original_due_date_dte            date,
    due_date_dte                     date,
    paid_at_dte                      date,
    issue_at_tsmp                    timestamp,
    original_due_date_tsmp           timestamp,
    due_date_tsmp                    timestamp,
    paid_at_tsmp                     timestamp,
    payment_method                   text,
    payment_status                   text        NOT NULL,
    paid_amount                      numeric(16, 2) NOT NULL DEFAULT 0,
    billing_amount                   numeric(16, 2) NOT NULL,
    payment_amount                   numeric(16, 2),
    installment                      text        NOT NULL DEFAULT '1/1',
    payment_provider                 text,
    discount_before_payment          numeric(16, 2),
    discount_before_payment_due_date date,
    description                      text,
    qrcode_number                    text,
    os_code                          text,
    os_identifier                    text,
    by_mail                          boolean,
    by_whatsapp                      boolean,
    fees                             numeric(12, 4),
    fine                             numeric(16, 2),
    paid_at                          timestamp,
    paid_method                      text,
    manual                           text,
    billing_number                   text,
    -- load bookkeeping (not part of the export)
    source_file                      text,
    source_line                      integer,
    loaded_at                        timestamptz NOT NULL DEFAULT now(),
    -- instalment "k/n" split once, for the feature queries
    installment_number               integer GENERATED ALWAYS AS (split_part(installment, '/', 1)::integer) STORED,
    installment_count                integer GENERATED ALWAYS AS (split_part(installment, '/', 2)::integer) STORED,
    CONSTRAINT payments_bill_key UNIQUE (company_id, payment_number, installment),
    CONSTRAINT payments_installment_format CHECK (installment ~ '^[0-9]{1,6}/[0-9]{1,6}$')
);

-- Feature queries group by customer and filter on dates known as of T.
CREATE INDEX payments_customer_idx ON payments (company_id, customer_id);
CREATE INDEX payments_issue_date_idx ON payments (issue_date_dte);
CREATE INDEX payments_due_date_idx ON payments (due_date_dte);

-- companies: the company profiling export, 29 columns.  Two export column
-- names contain '-' (`payments_issued_m-1`,
-- `payments_issued_with_due_date_same_month_m-1`); they are stored with '_'
-- instead (`payments_issued_m_1`, `payments_issued_with_due_date_same_month_m_1`)
-- so no query needs quoted identifiers.  company_id can be NULL or repeated in
-- the export, so the table has a surrogate key; each load replaces the whole
-- snapshot in one transaction.  growth_rate is double precision because the
-- export contains +infinity.
CREATE TABLE companies (
    company_row_id                                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id                                    text,
    consider_for_revenue                          boolean,
    first_active_date                             timestamp,
    last_active_date                              timestamp,
    is_considered_for_recovery                    boolean,
    is_cosidered_for_subscription                 boolean,
    is_considered_for_wapp_messages_sent          boolean,
    recovery_tax                                  double precision,
    whatsapp_tax                                  double precision,
    monthly_fee_tax                               double precision,
    has_fit_bank                                  boolean,
    is_using_kobana                               boolean,
    bank_account_type                             text,
    company_size                                  text,
    has_no_issues                                 boolean,
    is_dropout                                    boolean,
    is_churn                                      boolean,
    is_preactive                                  boolean,
    is_trial_m_1                                  boolean,
    is_trial_m_2                                  boolean,
    payments_issued_m_1                           double precision,
    payments_issued_with_due_date_same_month_m_1  double precision,
    median_of_issued_payments                     double precision,
    growth_rate                                   double precision,
    is_growing                                    boolean,
    is_shrinking                                  boolean,
    is_churn_risk                                 boolean,
    is_key_account                                boolean,
    is_key_onboarding                             boolean,
    source_file                                   text,
    source_line                                   integer,
    loaded_at                                     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companies_company_id_idx ON companies (company_id);
