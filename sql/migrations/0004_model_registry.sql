-- Model registry: one row per trained model (models/registry.py).
--
-- status: 'champion' (the model the daily scoring uses; at most one),
-- 'challenger' (trained, waiting for the weekly promotion decision),
-- 'archived' (a former champion or a rejected challenger).
-- artifact_path is relative to the model store (settings.model_store) unless
-- absolute; sha256 is the artifact file's digest, checked before every load
-- (a file whose digest differs is never unpickled).
-- training_start / training_end: first and last training snapshot (as-of
-- dates); holdout_as_of: the snapshot of the time holdout the metrics come from.
CREATE TABLE model_registry (
    version            text        PRIMARY KEY,
    created_at         timestamptz NOT NULL DEFAULT now(),
    status             text        NOT NULL
        CONSTRAINT model_registry_status CHECK (status IN ('champion', 'challenger', 'archived')),
    status_changed_at  timestamptz NOT NULL DEFAULT now(),
    metrics            jsonb       NOT NULL,
    artifact_path      text        NOT NULL,
    sha256             text        NOT NULL CONSTRAINT model_registry_sha256 CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    rules_version      text        NOT NULL,
    feature_columns    jsonb       NOT NULL,
    horizon_days       integer     NOT NULL,
    training_start     date        NOT NULL,
    training_end       date        NOT NULL,
    holdout_as_of      date,
    metadata           jsonb       NOT NULL,
    CONSTRAINT model_registry_window CHECK (training_start <= training_end)
);
-- At most one champion at any time (promotion swaps statuses in one transaction).
CREATE UNIQUE INDEX model_registry_one_champion ON model_registry ((status)) WHERE status = 'champion';

-- Reference sample of each model's training features (a few thousand rows,
-- one JSON object of FEATURE_COLUMNS per row), the baseline of drift checks.
CREATE TABLE model_reference_sample (
    model_version  text    NOT NULL REFERENCES model_registry (version) ON DELETE CASCADE,
    row_number     integer NOT NULL,
    features       jsonb   NOT NULL,
    PRIMARY KEY (model_version, row_number)
);
