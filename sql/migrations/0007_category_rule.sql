-- The payer-category rule's one home in SQL: which bills count, when a bill is
-- due, paid, matured and late, and the category of a late share.  The feature
-- query (sql/customer_features.sql) and the label query
-- (sql/performance_labels.sql) call these functions instead of spelling the
-- rules out; the rules' values (status lists, grace days, thresholds) stay in
-- config/rules.toml and arrive as arguments (payer_scoring/rules.py
-- Rules.sql_params).  Plain SQL, IMMUTABLE: the planner inlines them, so the
-- queries cost what they cost with the expressions written in place.
-- Changing a rule's logic = a new migration that replaces a function (tests
-- hold the SQL to payer_scoring.rules.category_for and the hand-worked fixture).

-- A bill counts (is neither cancelled nor voided) under the rules' status lists.
CREATE FUNCTION payer_bill_counts(status text, paid_statuses text[], open_statuses text[],
                                  excluded_statuses text[], unknown_excluded boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NOT (status = ANY (excluded_statuses))
       AND NOT (unknown_excluded AND NOT (status = ANY (paid_statuses || open_statuses)))
$$;

-- The due date that counts: due_date_dte, or the original one (falling back to
-- due_date_dte) when the rules say so.  NULL: the bill never matures.
CREATE FUNCTION payer_bill_due(due_date_dte date, original_due_date_dte date, due_date_column text)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN due_date_column = 'original_due_date_dte'
                THEN COALESCE(original_due_date_dte, due_date_dte)
                ELSE due_date_dte END
$$;

-- The date the bill was paid, as known at `at`: a paid status AND paid on or
-- before `at` (statuses describe the export date); NULL = unpaid at `at`.
CREATE FUNCTION payer_bill_paid_on(status text, paid_at date, paid_statuses text[], at date)
RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status = ANY (paid_statuses) AND paid_at <= at THEN paid_at END
$$;

-- Matured at `at`: due + grace (due_limit) before `at`.
CREATE FUNCTION payer_bill_matured(due_limit date, at date)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(due_limit < at, false)
$$;

-- Late at `at`: matured, and paid after due + grace or still unpaid at `at`
-- (paid_on as given by payer_bill_paid_on for the same `at`).
CREATE FUNCTION payer_bill_late(due_limit date, paid_on date, at date)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(due_limit < at, false) AND (paid_on IS NULL OR paid_on > due_limit)
$$;

-- The category of n_late late bills out of n_matured matured ones: `new`
-- below min_matured_bills, otherwise by the late share's upper bounds
-- (inclusive) good_max <= doubtful_max <= forgetful_max, above them `bad`.
-- The same rule as payer_scoring.rules.category_for.
CREATE FUNCTION payer_category(n_late bigint, n_matured bigint, min_matured_bills integer,
                               good_max numeric, doubtful_max numeric, forgetful_max numeric)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN n_matured < GREATEST(min_matured_bills, 1) THEN 'new'
                WHEN CAST(n_late AS numeric) / n_matured <= good_max THEN 'good'
                WHEN CAST(n_late AS numeric) / n_matured <= doubtful_max THEN 'doubtful'
                WHEN CAST(n_late AS numeric) / n_matured <= forgetful_max THEN 'forgetful'
                ELSE 'bad' END
$$;

-- Migration 0004 described this table as training features; it holds the
-- drift population at the model's training as-of date.
COMMENT ON TABLE model_reference_sample IS
    'Drift reference of each model: features of the customers active at its training as-of date (models/training.py reference_population), at most 5,000 rows.';
