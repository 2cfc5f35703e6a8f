-- Performance-window label of every customer for the snapshot :as_of (T):
-- the category rules applied to the bills that mature in (T, T + :horizon_days],
-- with payments known as of E = T + :horizon_days.
--
-- A bill belongs to the window when it is matured at E but was not matured at
-- T (same definition as sql/customer_features.sql: matured at D when
-- due + :grace_days < D), i.e.  T <= due + grace < E.  Bills issued after T
-- count too (they mature in the window).  Late = paid after due + grace, or
-- unpaid as of E (paid as of E: paid status AND paid_at_dte <= E).
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
        (CASE WHEN p.payment_status = ANY (CAST(:paid_statuses AS text[]))
                   AND p.paid_at_dte <= CAST(:as_of AS date) + CAST(:horizon_days AS integer)
              THEN p.paid_at_dte END) AS paid_on,
        d.due + CAST(:grace_days AS integer) AS due_limit
    FROM payments p
    CROSS JOIN LATERAL (
        SELECT CASE WHEN CAST(:due_date_column AS text) = 'original_due_date_dte'
                    THEN COALESCE(p.original_due_date_dte, p.due_date_dte)
                    ELSE p.due_date_dte END AS due
    ) d
    WHERE p.issue_date_dte <= CAST(:as_of AS date) + CAST(:horizon_days AS integer)
      AND d.due + CAST(:grace_days AS integer) >= CAST(:as_of AS date)
      AND d.due + CAST(:grace_days AS integer) <  CAST(:as_of AS date) + CAST(:horizon_days AS integer)
      AND NOT (p.payment_status = ANY (CAST(:excluded_statuses AS text[])))
      AND NOT (CAST(:unknown_excluded AS boolean)
               AND NOT (p.payment_status = ANY (CAST(:paid_statuses AS text[]) || CAST(:open_statuses AS text[]))))
),
customer AS (
    SELECT
        company_id,
        customer_id,
        count(*)                                                          AS n_window,
        count(*) FILTER (WHERE paid_on IS NULL OR paid_on > due_limit)    AS n_window_late
    FROM window_bill
    GROUP BY company_id, customer_id
)
SELECT
    company_id,
    customer_id,
    n_window,
    n_window_late,
    CASE WHEN CAST(n_window_late AS numeric) / n_window <= CAST(:good_max AS numeric) THEN 'good'
         WHEN CAST(n_window_late AS numeric) / n_window <= CAST(:doubtful_max AS numeric) THEN 'doubtful'
         WHEN CAST(n_window_late AS numeric) / n_window <= CAST(:forgetful_max AS numeric) THEN 'forgetful'
         ELSE 'bad' END AS label
FROM customer
ORDER BY company_id, customer_id
