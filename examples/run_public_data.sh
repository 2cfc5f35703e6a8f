#!/usr/bin/env bash
# Run the whole pipeline on one public data set of ../shared/data/real, in a
# scratch database, and print the figures of README "Results on public data".
#
#   examples/run_public_data.sh NAME        NAME: ibm | nigeria | nigeria_test | home_credit | uci
#
# Steps (each is a plain payer-scoring command; the script only adds the
# scratch database and the figures):
#   1. a fresh database ps_public_<NAME> on the server of DATABASE_URL, or on
#      the embedded server when DATABASE_URL is unset (dropped first if it
#      exists, and again at the end);
#   2. payer-scoring load payments FILE --mapping examples/mappings/<NAME>.yaml
#      (UCI: examples/convert_uci_credit_card.py first);
#   3. payer-scoring retrain --force --as-of AS_OF   (trains the first champion
#      through the weekly retrain flow);
#   4. payer-scoring score --as-of AS_OF             (the daily scoring flow
#      writes customer_categories);
#   5. payer-scoring evaluate --as-of AS_OF --report-json ...  (champion vs the
#      persistence and majority baselines on the holdout snapshot AS_OF - H);
#   6. prints customers and bills loaded, rejects, the category distribution of
#      customer_categories and the evaluation, and writes them as JSON to
#      $OUT_DIR/<NAME>.summary.json.
#
# AS_OF is the day after the data set's last date, so the scoring run sees the
# whole history (UCI: the day after the last due date; its late payments are
# invented k months later and must not count as known).  Per data set choices
# are in the `case` below; README "Results on public data" explains them.
#
# Environment:
#   DATA_DIR   folder of the data sets (default: ../shared/data/real beside the repo)
#   OUT_DIR    where the rejects report, the JSON reports and the summary go
#              (default: a new temporary folder, printed at the end)
#   KEEP_DB=1  keep the scratch database and model store (for psql afterwards)
#   DATABASE_URL  a PostgreSQL server to use instead of the embedded one; the
#              scratch database is created on the same server (needs CREATEDB)
#
# Takes 1-2 minutes per data set on a 2-core machine (UCI about 5: 180,000 bills).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$REPO/../shared/data/real}"
if [[ -x "$REPO/.venv/bin/payer-scoring" ]]; then
  PS="$REPO/.venv/bin/payer-scoring"
  PY="$REPO/.venv/bin/python"
else
  PS="payer-scoring"
  PY="python3"
fi

usage() {
  sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[[ $# -eq 1 ]] || usage
NAME="$1"

# ---- per data set: files, mapping, as-of date, settings ---------------------
FILES=()
CONVERT_UCI=0
case "$NAME" in
  ibm)
    # 2,466 invoices of 100 customers, 2012-01-03 .. settled by 2014-01-09.
    FILES=("$DATA_DIR/ibm_accounts_receivable/WA_Fn-UseC_-Accounts-Receivable.csv")
    MAPPING="$REPO/examples/mappings/ibm_accounts_receivable.yaml"
    AS_OF=2014-01-10
    ;;
  nigeria)
    # Both files (no shared customers, loan ids unique across them):
    # 24,090 loans of 5,801 customers; last repayment 2017-07-30.
    FILES=("$DATA_DIR/nigeria_superlender_loans/trainprevloans.csv"
           "$DATA_DIR/nigeria_superlender_loans/testprevloans.csv")
    MAPPING="$REPO/examples/mappings/nigeria_superlender_loans.yaml"
    AS_OF=2017-07-31
    ;;
  nigeria_test)
    # The test file alone: 5,907 loans of 1,442 customers (the CI slow test's data).
    FILES=("$DATA_DIR/nigeria_superlender_loans/testprevloans.csv")
    MAPPING="$REPO/examples/mappings/nigeria_superlender_loans.yaml"
    AS_OF=2017-07-31
    ;;
  home_credit)
    # Days relative to each application, placed before base_date 2018-01-01:
    # last instalment day 2017-12-29, last payment 2017-12-25.
    FILES=("$DATA_DIR/home_credit_installments_sample/installments_payments.csv")
    MAPPING="$REPO/examples/mappings/home_credit_installments.yaml"
    AS_OF=2017-12-30
    ;;
  uci)
    # Six monthly statements Apr-Sep 2005 (invented dates: due on the 15th).
    # With H = 90 no training snapshot fits (the holdout 2005-06-18 minus 90
    # days is before the first statement), so H = 31: one statement per
    # window.  Snapshots weekly from 60 days after the first statement, so the
    # training set has several snapshots in a six-month history.
    FILES=("$DATA_DIR/uci_credit_card_taiwan/UCI_Credit_Card.csv")
    MAPPING="$REPO/examples/mappings/uci_credit_card_taiwan.yaml"
    AS_OF=2005-09-16
    CONVERT_UCI=1
    export PAYER_SCORING_HORIZON_DAYS=31
    export PAYER_SCORING_MIN_HISTORY_DAYS=60
    export PAYER_SCORING_SNAPSHOT_EVERY_DAYS=7
    ;;
  *)
    echo "error: unknown data set '$NAME'; expected ibm, nigeria, nigeria_test, home_credit or uci" >&2
    exit 2
    ;;
esac

for f in "${FILES[@]}"; do
  [[ -f "$f" ]] || { echo "error: $f not found (set DATA_DIR to the folder of the public data sets)" >&2; exit 1; }
done

OUT_DIR="${OUT_DIR:-$(mktemp -d -t "public_${NAME}_XXXX")}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
DB="ps_public_${NAME}"
export PAYER_SCORING_MODEL_STORE="$OUT_DIR/model_store"
mkdir -p "$PAYER_SCORING_MODEL_STORE"

# ---- scratch database ------------------------------------------------------
# The server: DATABASE_URL's, or the embedded one (`payer-scoring db url`
# starts it).  Creating and dropping uses the project's own helpers, so no
# psql/createdb is needed.
SERVER_URL="${DATABASE_URL:-$("$PS" db url)}"
scratch() {  # scratch create|drop -> prints the scratch database URL on create
  "$PY" - "$1" "$SERVER_URL" "$DB" <<'EOF'
import sys
from sqlalchemy.engine import make_url
from payer_scoring import db
action, server, name = sys.argv[1:]
url = make_url(server).set(drivername="postgresql+psycopg")
admin = url.set(database="postgres").render_as_string(hide_password=False)
db.drop_database(admin, name)
if action == "create":
    db.ensure_database(admin, name)
    print(db.libpq_url(url.set(database=name).render_as_string(hide_password=False)))
EOF
}
SCRATCH_URL="$(scratch create)"
cleanup() {
  if [[ "${KEEP_DB:-0}" == 1 ]]; then
    echo "kept: DATABASE_URL='$SCRATCH_URL' PAYER_SCORING_MODEL_STORE='$PAYER_SCORING_MODEL_STORE'"
  else
    scratch drop || echo "warning: could not drop scratch database $DB" >&2
    rm -rf "$PAYER_SCORING_MODEL_STORE"
  fi
}
trap cleanup EXIT
export DATABASE_URL="$SCRATCH_URL"
echo "== $NAME: scratch database $DB, as of $AS_OF, outputs in $OUT_DIR" >&2

# ---- load -----------------------------------------------------------------
step() { echo "== $NAME: $*" >&2; }
REJECTS=()
for f in "${FILES[@]}"; do
  input="$f"
  if [[ $CONVERT_UCI == 1 ]]; then
    input="$OUT_DIR/uci_credit_card_months.csv"
    step "convert $(basename "$f") -> $(basename "$input")"
    "$PY" "$REPO/examples/convert_uci_credit_card.py" "$f" "$input"
  fi
  rejects="$OUT_DIR/$(basename "$input").rejects.csv"
  REJECTS+=("$rejects")
  step "load $(basename "$input")"
  "$PS" load payments "$input" --mapping "$MAPPING" --rejects "$rejects"
done

# ---- retrain (first champion) -> score -> evaluate -------------------------
step "retrain --force --as-of $AS_OF"
"$PS" retrain --force --as-of "$AS_OF" > "$OUT_DIR/retrain.json"
step "score --as-of $AS_OF"
"$PS" score --as-of "$AS_OF" > "$OUT_DIR/score.json"
step "evaluate --as-of $AS_OF"
"$PS" evaluate --as-of "$AS_OF" --report-json "$OUT_DIR/evaluation.json" > /dev/null

# ---- figures ---------------------------------------------------------------
"$PY" - "$NAME" "$AS_OF" "$OUT_DIR" "${REJECTS[@]}" <<'EOF'
import csv, json, sys
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from payer_scoring.db import get_engine
from payer_scoring.settings import get_settings

name, as_of, out_dir, *rejects = sys.argv[1:]
out = Path(out_dir)
rejected = set()
for path in rejects:
    with open(path, newline="", encoding="utf-8") as fh:
        rejected |= {(r["file"], r["line"]) for r in csv.DictReader(fh) if r["kind"] == "reject"}
with get_engine(get_settings()).connect() as conn:
    customers, bills = conn.execute(sa.text(
        "SELECT count(DISTINCT (company_id, customer_id)), count(*) FROM payments")).one()
    predicted = dict(conn.execute(sa.text(
        "SELECT category, count(*) FROM customer_categories GROUP BY 1")).all())
    observed = dict(conn.execute(sa.text(
        "SELECT observed_category, count(*) FROM customer_categories GROUP BY 1")).all())
    rows = conn.execute(sa.text("SELECT count(*) FROM customer_categories")).scalar_one()
report = json.loads((out / "evaluation.json").read_text())
order = ("good", "doubtful", "forgetful", "bad", "new")
settings = get_settings()
summary = {
    "data_set": name,
    "measured": date.today().isoformat(),
    "as_of": as_of,
    "horizon_days": settings.horizon_days,
    "customers": customers,
    "bills_loaded": bills,
    "rejected_rows": len(rejected),
    "customer_categories_rows": rows,
    "predicted": {c: predicted.get(c, 0) for c in order},
    "observed": {c: observed.get(c, 0) for c in order},
    "holdout_as_of": report["holdout_as_of"],
    "holdout_n": report["model"]["n"],
    "holdout_labels": {c: report["label_counts"].get(c, 0) for c in order[:4]},
    "evaluation": {k: {m: round(report[k][m], 3) for m in ("macro_f1", "log_loss")}
                   for k in ("model", "persistence", "persistence_transition", "majority")},
}
(out / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
fmt = lambda d: ", ".join(f"{c} {d[c]:,}" for c in order)
ev = summary["evaluation"]
print(f"data set            {name} (as of {as_of}, H = {settings.horizon_days} days)")
print(f"customers loaded    {customers:,}")
print(f"bills loaded        {bills:,}")
print(f"rejected rows       {len(rejected):,}")
print(f"customer_categories {rows:,} rows: {fmt(summary['predicted'])}")
print(f"  observed at as-of {fmt(summary['observed'])}")
print(f"holdout             {', '.join(report['holdout_as_of'])}: {summary['holdout_n']:,} customers with a label "
      f"({', '.join(f'{c} {n:,}' for c, n in summary['holdout_labels'].items())})")
print(f"{'':26}macro-F1  log-loss")
for k in ("model", "persistence", "persistence_transition", "majority"):
    print(f"  {k:<24}{ev[k]['macro_f1']:>8.3f}  {ev[k]['log_loss']:>8.3f}")
print(f"summary             {out / (name + '.summary.json')}")
EOF
