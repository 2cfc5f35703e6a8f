-- Hidden truth of the synthetic data generator (payer_scoring/generator.py).
--
-- EVALUATION ONLY: feature and scoring queries must never read these tables;
-- they exist so tests and notebooks can check what a model recovered.
--
-- synthetic_truth: one row per behaviour segment of a generated customer.  The
-- behaviour drives how that customer pays bills that fall due inside
-- [valid_from, valid_to); valid_to NULL = still valid at the end of the
-- generated history.  cause says why the segment started: 'initial' (first
-- bill), 'switch' (random monthly switch), 'drop_out' (stops paying for good),
-- 'drift' (the --drift-at shift toward late behaviour).
CREATE TABLE synthetic_truth (
    company_id  text NOT NULL,
    customer_id text NOT NULL,
    behaviour   text NOT NULL
        CONSTRAINT synthetic_truth_behaviour CHECK (behaviour IN ('punctual', 'doubtful', 'forgetful', 'bad', 'drop_out')),
    valid_from  date NOT NULL,
    valid_to    date,
    cause       text NOT NULL
        CONSTRAINT synthetic_truth_cause CHECK (cause IN ('initial', 'switch', 'drop_out', 'drift')),
    PRIMARY KEY (company_id, customer_id, valid_from),
    CONSTRAINT synthetic_truth_period CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- synthetic_runs: the settings of each generator run, so an evaluation knows
-- the export date (end_date, the snapshot the statuses describe) and the drift date.
CREATE TABLE synthetic_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seed         bigint  NOT NULL,
    customers    integer NOT NULL,
    companies    integer NOT NULL,
    bills        bigint  NOT NULL,
    start_date   date    NOT NULL,
    end_date     date    NOT NULL,
    drift_at     date,
    generated_at timestamptz NOT NULL DEFAULT now()
);
