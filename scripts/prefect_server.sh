#!/usr/bin/env bash
# `make prefect`: a local Prefect server with its UI, the process work pool,
# both deployments from prefect.yaml, and a worker — all in this terminal.
# Ctrl-C stops the worker and the server.  State lives in .prefect/ here.
set -euo pipefail
cd "$(dirname "$0")/.."

export PAYER_SCORING_HOME="$PWD"
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"
port="${PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:${port}/api"
pool=payer-scoring-pool
BIN=.venv/bin
mkdir -p "$PREFECT_HOME"
log="$PREFECT_HOME/server.log"

server_pid=""
worker_pid=""
stop() {
  trap - EXIT INT TERM
  echo "stopping the worker and the Prefect server ..."
  for pid in $worker_pid $server_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 15); do
    alive=0
    for pid in $worker_pid $server_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in $worker_pid $server_pid; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

"$BIN/prefect" server start --host 127.0.0.1 --port "$port" > "$log" 2>&1 &
server_pid=$!

echo "waiting for the Prefect server on port $port (log: $log) ..."
for _ in $(seq 1 180); do
  if "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$PREFECT_API_URL/health" 2>/dev/null; then
    break
  fi
  kill -0 $server_pid 2>/dev/null || { echo "Prefect server exited; see $log"; exit 1; }
  sleep 1
done

"$BIN/payer-scoring" db migrate
"$BIN/prefect" work-pool create "$pool" --type process --overwrite
# (Prefect's deploy output says "start a worker": this script starts it below.)
"$BIN/prefect" --no-prompt deploy --all
echo
echo "Prefect UI:  http://127.0.0.1:${port}   (Deployments -> daily-scoring / weekly-retrain)"
echo "Run now:     PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect deployment run score-customers/daily-scoring --param as_of=2026-11-27"
echo "Stop:        Ctrl-C (stops the worker and the server)"
echo
"$BIN/prefect" worker start --pool "$pool" --type process &
worker_pid=$!
wait "$worker_pid" || true
