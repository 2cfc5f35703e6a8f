#!/usr/bin/env bash
# Worker container: migrate the database, give billing_reader and api_reader
# their passwords, create the process work pool, deploy both deployments from
# prefect.yaml, create/update the project's automations (zombie runs, alerts,
# 07:00 deadline; README "Operations") and start a worker on the pool.  Every
# step is idempotent, so a restart is safe.
set -euo pipefail
cd "${PAYER_SCORING_HOME:-/app}"

payer-scoring db migrate
if [ -n "${BILLING_READER_PASSWORD:-}" ]; then
  payer-scoring db billing-password
fi
if [ -n "${API_READER_PASSWORD:-}" ]; then
  payer-scoring db api-password
fi
prefect work-pool create payer-scoring-pool --type process --overwrite
prefect --no-prompt deploy --all
payer-scoring prefect setup
exec prefect worker start --pool payer-scoring-pool --type process
