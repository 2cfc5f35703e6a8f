-- Point-in-time features of every customer as of :as_of (T), plus the
-- observed category (the rules applied to the history known at T).
--
-- One row per (company_id, customer_id) with at least one counted bill issued
-- on or before T.  One pass over `payments` (filtered on issue date), one sort
-- of narrow rows (ids, dates, amount, flags) that serves the window function
-- and the per-customer aggregate; company aggregates are window functions over
-- the per-customer rows, not a second scan.
--
-- Point in time:
--   * only bills issued on or before T;
--   * a bill is paid as of T only when its status is a paid status AND
--     paid_at_dte <= T (statuses describe the export date; a bill paid after T
--     is unpaid as of T);
--   * a protest/derogatory status (also an export-date fact) counts as an event
--     at T only when the bill was paid by T or was due at least
--     :event_known_after_days before T.
-- The remaining export-date facts used are the excluded statuses (a bill
-- cancelled later is left out at every T) and the `companies` snapshot.
--
-- Definitions: the bill rules are the SQL functions of migration 0007
-- (payer_bill_counts, payer_bill_due, payer_bill_paid_on, payer_bill_matured,
-- payer_bill_late, payer_category), fed with config/rules.toml's values as bind
-- parameters:
--   due          = payer_bill_due(...); NULL due -> never matures
--   limit        = due + :grace_days
--   matured      = payer_bill_matured(limit, T)              (limit < T)
--   late         = payer_bill_late(limit, paid_on, T)        (matured AND (unpaid as of T OR paid after limit))
--   delay_days   = (paid date, or T when unpaid) - due        (signed; < 0 = early)
--   dpd          = GREATEST(delay_days, 0)                    (days past due)
--
-- Neutral values (so no feature is NULL): shares and day statistics over no
-- bills are 0; the 90-day and previous-90-day late shares fall back to the
-- customer's overall late share (no evidence of a change, trend 0); "days
-- since the last payment/late bill" fall back to tenure_days (nothing since
-- the first bill); company aggregates of an unknown company are 0.
--
-- Bind parameters: :as_of date, :horizon_days int, :exclude_run_id text|NULL
-- (bills quarantined in that scoring run are left out) and the rules'
-- parameters (payer_scoring.rules.Rules.sql_params).
--
-- On-demand scoring (the HTTP service) uses this same query with two more
-- parameters, NULL for the daily batch:
--   :company_id text|NULL   only that company's bills (its company aggregates
--                           need all its customers, so the filter is the company);
--   :customer_id text|NULL  only that customer's row in the result;
-- the partitioned daily run (task runner dask) uses two more, NULL otherwise:
--   :partition_index, :partition_count integer|NULL  only the companies of
--                           that partition (payer_company_partition, migration
--                           0013; whole companies, so company aggregates are exact);
-- and, to add one bill without writing it, the bills placeholder in `bill`
-- below becomes the subquery of sql/customer_features_extra_bill.sql: the
-- stored bills plus one row of bind parameters.  For the batch it is
-- `payments` and the NULL filters fold to constants
-- (payer_scoring.features.read_query_csv inlines the values client-side), so
-- the batch's plan is the one it had before.  The placeholder is filled by
-- payer_scoring/features.py from that fixed choice of two texts.
WITH bill AS (
    SELECT
        p.company_id,
        p.customer_id,
        p.issue_date_dte                                   AS issued,
        d.due,
        d.due + CAST(:grace_days AS integer)               AS due_limit,
        payer_bill_paid_on(p.payment_status, p.paid_at_dte, CAST(:paid_statuses AS text[]),
                           CAST(:as_of AS date))           AS paid_on,
        CAST(p.billing_amount AS double precision)         AS amount_brl,
        COALESCE(p.installment_count, 1) > 1               AS is_instalment,
        -- payment-method families (the export has generic, boleto, bolepix, pix,
        -- credit_card, debit_card, bank_transfer; matched by pattern so new
        -- spellings still count): flags, so the sort below carries no text
        lower(p.payment_method) LIKE '%pix%'                                      AS is_pix,
        lower(p.payment_method) LIKE '%boleto%' OR lower(p.payment_method) LIKE '%slip%' AS is_boleto,
        lower(p.payment_method) LIKE '%card%' OR lower(p.payment_method) LIKE '%cart%'   AS is_card,
        COALESCE(p.by_mail, false)                         AS by_mail,
        COALESCE(p.by_whatsapp, false)                     AS by_whatsapp,
        p.payment_status = ANY (CAST(:event_statuses AS text[])) AS event_status
    FROM {bills} p
    CROSS JOIN LATERAL (
        SELECT payer_bill_due(p.due_date_dte, p.original_due_date_dte, CAST(:due_date_column AS text)) AS due
    ) d
    WHERE p.issue_date_dte <= CAST(:as_of AS date)
      AND (CAST(:company_id AS text) IS NULL OR p.company_id = CAST(:company_id AS text))
      AND (CAST(:partition_count AS integer) IS NULL
           OR payer_company_partition(p.company_id, CAST(:partition_count AS integer)) = CAST(:partition_index AS integer))
      AND payer_bill_counts(p.payment_status, CAST(:paid_statuses AS text[]), CAST(:open_statuses AS text[]),
                            CAST(:excluded_statuses AS text[]), CAST(:unknown_excluded AS boolean))
      AND NOT EXISTS (
          SELECT 1 FROM quarantined_payments q
          WHERE q.flow_run_id = CAST(:exclude_run_id AS text)
            AND q.company_id = p.company_id
            AND q.payment_number = p.payment_number
            AND q.installment = p.installment
      )
),
flag AS (
    SELECT
        b.*,
        m.matured,
        payer_bill_late(b.due_limit, b.paid_on, CAST(:as_of AS date))           AS late,
        COALESCE(b.paid_on, CAST(:as_of AS date)) - b.due                       AS delay_days,
        GREATEST(COALESCE(b.paid_on, CAST(:as_of AS date)) - b.due, 0)          AS dpd,
        -- 1 = the most recently due matured bill of the customer.  Ties on the
        -- due date are broken by days past due, so the recent-3 features are
        -- the same whatever order the rows come in.
        row_number() OVER (PARTITION BY b.company_id, b.customer_id, m.matured
                           ORDER BY b.due DESC,
                                    GREATEST(COALESCE(b.paid_on, CAST(:as_of AS date)) - b.due, 0) DESC) AS recency
    FROM bill b
    CROSS JOIN LATERAL (
        SELECT payer_bill_matured(b.due_limit, CAST(:as_of AS date)) AS matured
    ) m
),
customer AS (
    SELECT
        f.company_id,
        f.customer_id,
        count(*)                                                                AS n_bills,
        count(*) FILTER (WHERE f.matured)                                       AS n_matured,
        count(*) FILTER (WHERE f.late)                                          AS n_late,
        count(*) FILTER (WHERE f.paid_on < f.due)                               AS n_paid_early,
        count(*) FILTER (WHERE f.matured AND f.paid_on IS NULL)                 AS n_unpaid_overdue,
        avg(f.dpd) FILTER (WHERE f.matured)                                     AS dpd_mean_days,
        max(f.dpd) FILTER (WHERE f.matured)                                     AS dpd_max_days,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY f.dpd) FILTER (WHERE f.matured) AS dpd_p90_days,
        avg(f.delay_days) FILTER (WHERE f.paid_on IS NOT NULL)                  AS paid_delay_mean_days,
        count(*) FILTER (WHERE f.matured AND f.recency <= 3)                    AS n_recent3,
        count(*) FILTER (WHERE f.late AND f.recency <= 3)                       AS n_recent3_late,
        avg(f.dpd) FILTER (WHERE f.matured AND f.recency <= 3)                  AS recent3_dpd_mean_days,
        count(*) FILTER (WHERE f.matured AND f.due_limit >= CAST(:as_of AS date) - 90) AS n_matured_90d,
        count(*) FILTER (WHERE f.late AND f.due_limit >= CAST(:as_of AS date) - 90)    AS n_late_90d,
        count(*) FILTER (WHERE f.matured AND f.due_limit < CAST(:as_of AS date) - 90
                               AND f.due_limit >= CAST(:as_of AS date) - 180)   AS n_matured_prev90d,
        count(*) FILTER (WHERE f.late AND f.due_limit < CAST(:as_of AS date) - 90
                               AND f.due_limit >= CAST(:as_of AS date) - 180)   AS n_late_prev90d,
        min(f.issued)                                                           AS first_issued,
        max(f.issued)                                                           AS last_issued,
        max(f.paid_on)                                                          AS last_paid,
        max(f.due_limit) FILTER (WHERE f.late)                                  AS last_late_limit,
        count(*) FILTER (WHERE f.paid_on IS NULL)                               AS n_open,
        COALESCE(sum(f.amount_brl) FILTER (WHERE f.paid_on IS NULL), 0)         AS open_brl,
        COALESCE(sum(f.amount_brl) FILTER (WHERE f.matured AND f.paid_on IS NULL), 0) AS overdue_brl,
        count(*) FILTER (WHERE NOT f.matured AND f.paid_on IS NULL
                               AND f.due_limit < CAST(:as_of AS date) + CAST(:horizon_days AS integer)) AS n_upcoming_open,
        count(*) FILTER (WHERE NOT f.matured AND f.paid_on IS NOT NULL
                               AND f.due_limit < CAST(:as_of AS date) + CAST(:horizon_days AS integer)) AS n_upcoming_prepaid,
        count(*) FILTER (WHERE f.issued > CAST(:as_of AS date) - 90)            AS n_bills_90d,
        avg(f.amount_brl)                                                       AS mean_amount_brl,
        max(f.amount_brl)                                                       AS max_amount_brl,
        avg(CAST(f.is_instalment AS integer))                                   AS instalment_share,
        avg(CAST(COALESCE(f.is_pix, false) AS integer))                         AS pix_share,
        avg(CAST(COALESCE(f.is_boleto, false) AS integer))                      AS boleto_share,
        avg(CAST(COALESCE(f.is_card, false) AS integer))                        AS card_share,
        avg(CAST(f.by_mail AS integer))                                         AS by_mail_share,
        avg(CAST(f.by_whatsapp AS integer))                                     AS by_whatsapp_share,
        count(*) FILTER (WHERE f.event_status
                               AND (f.paid_on IS NOT NULL
                                    OR f.due <= CAST(:as_of AS date) - CAST(:event_known_after_days AS integer))) AS n_protest_events
    FROM flag f
    GROUP BY f.company_id, f.customer_id
),
profile AS (
    SELECT company_id,
           bool_or(COALESCE(is_churn_risk, false))  AS is_churn_risk,
           bool_or(COALESCE(is_key_account, false)) AS is_key_account
    FROM companies
    WHERE company_id IS NOT NULL
    GROUP BY company_id
),
scored AS (
    SELECT
        c.*,
        CAST(c.n_late AS double precision) / NULLIF(c.n_matured, 0) AS late_share_raw,
        payer_category(c.n_late, c.n_matured, CAST(:min_matured_bills AS integer), CAST(:good_max AS numeric),
                       CAST(:doubtful_max AS numeric), CAST(:forgetful_max AS numeric)) AS observed_category,
        CAST(:as_of AS date) - c.first_issued                        AS tenure_days,
        -- company aggregates as windows over the (company-sorted) customer rows:
        -- no second pass over the customers
        CAST(sum(c.n_late) OVER w AS double precision) / NULLIF(sum(c.n_matured) OVER w, 0) AS company_late_share,
        count(*) OVER w                                              AS company_n_customers
    FROM customer c
    WINDOW w AS (PARTITION BY c.company_id)
)
SELECT
    s.company_id,
    s.customer_id,
    s.n_matured,
    s.observed_category,
    -- model inputs: the order of payer_scoring/features.py FEATURE_COLUMNS
    CAST(s.n_bills AS double precision)                                   AS n_bills,
    CAST(s.n_matured AS double precision)                                 AS n_matured_bills,
    CAST(s.n_late AS double precision)                                    AS n_late,
    CAST(s.n_paid_early AS double precision)                              AS n_paid_early,
    CAST(s.n_unpaid_overdue AS double precision)                          AS n_unpaid_overdue,
    COALESCE(s.late_share_raw, 0)                                         AS late_share,
    CAST(COALESCE(s.dpd_mean_days, 0) AS double precision)                AS dpd_mean_days,
    CAST(COALESCE(s.dpd_max_days, 0) AS double precision)                 AS dpd_max_days,
    COALESCE(s.dpd_p90_days, 0)                                           AS dpd_p90_days,
    CAST(COALESCE(s.paid_delay_mean_days, 0) AS double precision)         AS paid_delay_mean_days,
    COALESCE(CAST(s.n_recent3_late AS double precision) / NULLIF(s.n_recent3, 0), 0) AS recent3_late_share,
    CAST(COALESCE(s.recent3_dpd_mean_days, 0) AS double precision)        AS recent3_dpd_mean_days,
    CAST(s.n_matured_90d AS double precision)                             AS n_matured_90d,
    COALESCE(CAST(s.n_late_90d AS double precision) / NULLIF(s.n_matured_90d, 0),
             s.late_share_raw, 0)                                         AS late_share_90d,
    COALESCE(CAST(s.n_late_prev90d AS double precision) / NULLIF(s.n_matured_prev90d, 0),
             s.late_share_raw, 0)                                         AS late_share_prev90d,
    COALESCE(CAST(s.n_late_90d AS double precision) / NULLIF(s.n_matured_90d, 0), s.late_share_raw, 0)
      - COALESCE(CAST(s.n_late_prev90d AS double precision) / NULLIF(s.n_matured_prev90d, 0), s.late_share_raw, 0)
                                                                          AS late_share_trend,
    CAST(s.tenure_days AS double precision)                               AS tenure_days,
    CAST(CAST(:as_of AS date) - s.last_issued AS double precision)        AS since_last_bill_days,
    CAST(COALESCE(CAST(:as_of AS date) - s.last_paid, s.tenure_days) AS double precision) AS since_last_payment_days,
    CAST(COALESCE(CAST(:as_of AS date) - s.last_late_limit, s.tenure_days) AS double precision) AS since_last_late_days,
    CAST(s.n_open AS double precision)                                    AS n_open,
    s.open_brl                                                            AS open_brl,
    s.overdue_brl                                                         AS overdue_brl,
    CAST(s.n_upcoming_open AS double precision)                           AS n_upcoming_open,
    CAST(s.n_upcoming_prepaid AS double precision)                        AS n_upcoming_prepaid,
    CAST(s.n_bills_90d AS double precision)                               AS n_bills_90d,
    COALESCE(s.mean_amount_brl, 0)                                        AS mean_amount_brl,
    COALESCE(s.max_amount_brl, 0)                                         AS max_amount_brl,
    CAST(s.instalment_share AS double precision)                          AS instalment_share,
    CAST(s.pix_share AS double precision)                                 AS pix_share,
    CAST(s.boleto_share AS double precision)                              AS boleto_share,
    CAST(s.card_share AS double precision)                                AS card_share,
    CAST(s.by_mail_share AS double precision)                             AS by_mail_share,
    CAST(s.by_whatsapp_share AS double precision)                         AS by_whatsapp_share,
    CAST(s.n_protest_events AS double precision)                          AS n_protest_events,
    COALESCE(s.company_late_share, 0)                                     AS company_late_share,
    CAST(s.company_n_customers AS double precision)                       AS company_n_customers,
    CAST(COALESCE(pr.is_churn_risk, false) AS integer)::double precision  AS company_is_churn_risk,
    CAST(COALESCE(pr.is_key_account, false) AS integer)::double precision AS company_is_key_account
FROM scored s
LEFT JOIN profile pr ON pr.company_id = s.company_id
WHERE CAST(:customer_id AS text) IS NULL OR s.customer_id = CAST(:customer_id AS text)
ORDER BY s.company_id, s.customer_id
