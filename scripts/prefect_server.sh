#!/usr/bin/env bash
# `make prefect`: a local Prefect server with its UI, the process work pool,
# both deployments from prefect.yaml, the project's automations, and a worker
# — all in this terminal.  Ctrl-C stops the worker and the server.
#
# * The server is started only when the port is free: if something already
#   answers there (another checkout's server, say), the script stops with a
#   message instead of deploying this checkout onto it.
# * The worker is supervised: when it dies (crash, SIGKILL, OOM) the server
#   keeps running and a new worker starts 5 s later; the zombie automation
#   marks the dead worker's run Crashed once its heartbeats stop.
# * Logs are appended to .prefect/server.log and .prefect/worker.log and
#   rotated at 10 MB (three old files kept), never truncated.
# State lives in .prefect/ (SQLite: fine for one machine; production uses the
# PostgreSQL-backed server of docker-compose.yml, README "Operations").
set -euo pipefail
cd "$(dirname "$0")/.."

export PAYER_SCORING_HOME="$PWD"
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"
port="${PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:${port}/api"
# Flow runs send a heartbeat every 60 s; the zombie automation crashes a run
# silent for PAYER_SCORING_ZOMBIE_AFTER_SECONDS (300).
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-60}"
pool=payer-scoring-pool
BIN=.venv/bin
mkdir -p "$PREFECT_HOME"
server_log="$PREFECT_HOME/server.log"
worker_log="$PREFECT_HOME/worker.log"

rotate() {  # rotate() FILE: keep FILE.1..FILE.3 once FILE passes 10 MB
  local f=$1
  if [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt $((10 * 1024 * 1024)) ]; then
    for i in 2 1; do [ -f "$f.$i" ] && mv -f "$f.$i" "$f.$((i + 1))"; done
    mv -f "$f" "$f.1"
  fi
}

answers() {  # answers URL: 0 when an HTTP server answers there
  "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null
}

port_free() {  # SO_REUSEADDR as the server itself uses: a port in TIME_WAIT after our own stop counts as free
  "$BIN/python" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null
}

if ! port_free; then
  holder="something"
  answers "$PREFECT_API_URL/health" && holder="a Prefect server"
  echo "error: port $port is already held by $holder that this script did not start;" \
       "stop it or choose another port (PREFECT_PORT=4300 make prefect). Nothing was deployed." >&2
  exit 1
fi

server_pid=""
worker_pid=""
stopping=0
stop() {
  stopping=1
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
  exit 0
}
trap stop EXIT INT TERM

rotate "$server_log"
echo "=== $(date -u +%FT%TZ) make prefect: server start on port $port" >> "$server_log"
"$BIN/prefect" server start --host 127.0.0.1 --port "$port" >> "$server_log" 2>&1 &
server_pid=$!

echo "waiting for the Prefect server on port $port (log: $server_log) ..."
for _ in $(seq 1 180); do
  kill -0 $server_pid 2>/dev/null || { echo "error: the Prefect server exited; see $server_log" >&2; exit 1; }
  answers "$PREFECT_API_URL/health" && break
  sleep 1
done
# The port was free and our server process is alive: the server answering is ours.
kill -0 $server_pid 2>/dev/null || { echo "error: the Prefect server exited; see $server_log" >&2; exit 1; }

"$BIN/payer-scoring" db migrate
"$BIN/prefect" work-pool create "$pool" --type process --overwrite
# (Prefect's deploy output says "start a worker": this script starts it below.)
"$BIN/prefect" --no-prompt deploy --all
"$BIN/payer-scoring" prefect setup
echo
echo "Prefect UI:  http://127.0.0.1:${port}   (Deployments -> daily-scoring / weekly-retrain; Automations)"
echo "Run now:     PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect deployment run score-customers/daily-scoring --param as_of=2026-11-27"
echo "Logs:        $server_log, $worker_log"
echo "Stop:        Ctrl-C (stops the worker and the server)"
echo

while [ "$stopping" = 0 ]; do
  kill -0 $server_pid 2>/dev/null || { echo "error: the Prefect server exited; see $server_log" >&2; exit 1; }
  rotate "$worker_log"
  echo "=== $(date -u +%FT%TZ) make prefect: worker start" >> "$worker_log"
  "$BIN/prefect" worker start --pool "$pool" --type process > >(tee -a "$worker_log") 2>&1 &
  worker_pid=$!
  rc=0
  wait "$worker_pid" || rc=$?
  [ "$stopping" = 1 ] && break
  echo "$(date -u +%FT%TZ) worker exited (code $rc); the server keeps running; restarting the worker in 5 s" | tee -a "$worker_log" >&2
  sleep 5
done
