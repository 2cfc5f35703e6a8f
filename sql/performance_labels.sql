-- Performance-window label of every customer for the snapshot :as_of (T):
-- the category rules applied to the bills that mature in (T, T + :horizon_days],
-- with payments known as of E = T + :horizon_days.
--
-- A bill belongs to the window when it is matured at E but was not matured at
-- T (the bill rules are the SQL functions of migration 0007, shared with
-- sql/customer_features.sql: matured at D when due + :grace_days < D), i.e.
-- T <= due + grace < E.  Bills issued after T count too (they mature in the
-- window).  Late = payer_bill_late at E: paid after due + grace, or unpaid as
-- of E (paid as of E: paid status AND paid_at_dte <= E).
-- One row per customer with at least one bill in the window; a customer with
-- none gets no row (no label).  Any number of window bills judges (the
-- minimum for `new` applies to history, not to the outcome).
--
-- Bind parameters: :as_of date, :horizon_days int and the rules' parameters
-- (payer_scoring.rules.Rules.sql_params).  Only for snapshots whose window
-- has fully matured (E <= the data's as-of date).
WITH window_bill AS (
    SELECT
        p.company_id,
        p.customer_id,
        payer_bill_paid_on(p.payment_status, p.paid_at_dte, CAST(:paid_statuses AS text[]),
                           CAST(:as_of AS date) + CAST(:horizon_days AS integer)) AS paid_on,
        d.due + CAST(:grace_days AS integer) AS due_limit
    FROM payments p
    CROSS JOIN LATERAL (
        SELECT payer_bill_due(p.due_date_dte, p.original_due_date_dte, CAST(:due_date_column AS text)) AS due
    ) d
    WHERE p.issue_date_dte <= CAST(:as_of AS date) + CAST(:horizon_days AS integer)
      AND d.due + CAST(:grace_days AS integer) >= CAST(:as_of AS date)
      AND d.due + CAST(:grace_days AS integer) <  CAST(:as_of AS date) + CAST(:horizon_days AS integer)
      AND payer_bill_counts(p.payment_status, CAST(:paid_statuses AS text[]), CAST(:open_statuses AS text[]),
                            CAST(:excluded_statuses AS text[]), CAST(:unknown_excluded AS boolean))
),
customer AS (
    SELECT
        company_id,
        customer_id,
        count(*)                                                          AS n_window,
        count(*) FILTER (WHERE payer_bill_late(due_limit, paid_on,
                                               CAST(:as_of AS date) + CAST(:horizon_days AS integer))) AS n_window_late
    FROM window_bill
    GROUP BY company_id, customer_id
)
SELECT
    company_id,
    customer_id,
    n_window,
    n_window_late,
    -- any number of window bills judges: minimum 1
    payer_category(n_window_late, n_window, 1, CAST(:good_max AS numeric),
                   CAST(:doubtful_max AS numeric), CAST(:forgetful_max AS numeric)) AS label
FROM customer
ORDER BY company_id, customer_id
