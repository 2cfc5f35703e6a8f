#!/usr/bin/env bash
# Prove the worker image (not part of `make test`; README "Operations" records
# the last result):
#   1. build the Dockerfile with Docker or podman from BASE_IMAGE;
#   2. start, on this machine, the embedded PostgreSQL (a throw-away database
#      payer_scoring_imagecheck with 2,000 generated customers; its socket
#      folder is mounted into the container) and a local Prefect server on a
#      free port;
#   3. start the image's worker entrypoint (migrate, work pool, deploy,
#      automations, worker) with host networking against both;
#   4. run weekly-retrain (force: trains the first champion inside the
#      container) and daily-scoring, each to Completed.
# Exit code 0 only when both runs completed.  Everything started is stopped
# and the throw-away database dropped at the end.
#
# Usage:  scripts/check_image.sh [BASE_IMAGE]
#   BASE_IMAGE  a Debian-based image with Python 3.11 and python3-venv
#               (default python:3.11-slim, which needs a registry).  Without a
#               registry, make one locally, e.g.:
#                 debootstrap --variant=minbase --include=python3,python3-venv,make,ca-certificates,tzdata \
#                   bookworm /tmp/rootfs http://deb.debian.org/debian
#                 tar -C /tmp/rootfs -c . | podman import - localhost/bookworm-python:3.11
#               then: scripts/check_image.sh localhost/bookworm-python:3.11
#               Behind a TLS-intercepting proxy the base image must trust its CA
#               for the build's PyPI downloads: copy the CA into the rootfs'
#               usr/local/share/ca-certificates/, run `chroot ROOTFS
#               update-ca-certificates`, and import with
#               --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".
#   CONTAINER_ENGINE=docker|podman  (default: docker if its daemon answers, else
#               podman); may carry global options, e.g. "podman --runtime runc"
#   CONTAINER_ARGS  extra options for both build and run, e.g.
#               "--ulimit nofile=4096:4096 --ulimit nproc=4096:4096"
# Inside a container with hybrid cgroups (this project's build machine), crun
# refuses to start containers; what worked there:
#   CONTAINER_ENGINE="podman --runtime runc" \
#   CONTAINER_ARGS="--ulimit nofile=4096:4096 --ulimit nproc=4096:4096" \
#   scripts/check_image.sh localhost/bookworm-python:3.11
# The build installs requirements.lock from PyPI (the build needs the registry
# the lock names, as `make venv` does); running needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

base_image="${1:-${BASE_IMAGE:-python:3.11-slim}}"
engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  else echo "error: neither a Docker daemon nor podman is available (apt-get install docker.io or podman)" >&2; exit 1
  fi
fi
BIN=.venv/bin
[ -x "$BIN/payer-scoring" ] || make venv
image=payer-scoring-worker:check
work=$(mktemp -d /tmp/payer-scoring-imagecheck.XXXXXX)
export PREFECT_HOME="$work/prefect"
export PAYER_SCORING_DATABASE_NAME=payer_scoring_imagecheck
port=$("$BIN/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
export PREFECT_API_URL="http://127.0.0.1:${port}/api"
container=""
server_pid=""
started=$(date +%s)

cleanup() {
  [ -n "$container" ] && $engine rm -f "$container" >/dev/null 2>&1 || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  "$BIN/python" - <<'EOF' || true
from sqlalchemy.engine import make_url
from payer_scoring import db
from payer_scoring.settings import Settings
url = db.resolve_database_url(Settings())
db.drop_database(make_url(url).set(database="postgres").render_as_string(hide_password=False), "payer_scoring_imagecheck")
EOF
}
trap cleanup EXIT

echo "== 1. build ($engine, base image $base_image)"
build_started=$(date +%s)
extra="${CONTAINER_ARGS:-}"
# shellcheck disable=SC2086  # $engine and $extra are word lists on purpose
$engine build --network host $extra --build-arg BASE_IMAGE="$base_image" -t "$image" . > "$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; echo "error: the image build failed (log above, full: $work/build.log)" >&2; exit 1; }
echo "   built $image in $(( $(date +%s) - build_started )) s"

echo "== 2. embedded PostgreSQL (database $PAYER_SCORING_DATABASE_NAME) and a Prefect server on port $port"
database_url=$("$BIN/payer-scoring" db url)
DATABASE_URL="$database_url" "$BIN/payer-scoring" generate --customers 2000 --months 18 --seed 7 > /dev/null
"$BIN/prefect" server start --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 180); do
  "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$PREFECT_API_URL/health" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server.log"; exit 1; }
  sleep 1
done

echo "== 3. the image's worker entrypoint (host network)"
mkdir -p "$work/models"
# The embedded server listens on a Unix socket in its data folder only: the
# container gets that folder at the same path, so DATABASE_URL works unchanged.
pgdata=$("$BIN/python" -c "from payer_scoring.settings import Settings; print(Settings().pgdata.resolve())")
# shellcheck disable=SC2086
container=$($engine run -d --network host $extra \
  -e PREFECT_API_URL="$PREFECT_API_URL" -e DATABASE_URL="$database_url" \
  -e PAYER_SCORING_MODEL_STORE=/models -e PREFECT_WORKER_QUERY_SECONDS=2 \
  -v "$work/models:/models" -v "$pgdata:$pgdata" "$image")

echo "== 4. weekly-retrain (force) then daily-scoring, each to Completed"
"$BIN/python" - "$container" $engine <<'EOF'
import subprocess, sys, time
import httpx, os
api = httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=30)
container, engine = sys.argv[1], sys.argv[2:]

def logs():
    done = subprocess.run([*engine, "logs", "--tail", "40", container], capture_output=True, text=True)
    return done.stdout + done.stderr

deadline = time.monotonic() + 600
while True:
    ready = [api.get(f"/deployments/name/{d}").status_code == 200 for d in ("retrain-on-drift/weekly-retrain", "score-customers/daily-scoring")]
    workers = api.post("/work_pools/payer-scoring-pool/workers/filter", json={}).json() if all(ready) else []
    if all(ready) and isinstance(workers, list) and workers:
        break
    if time.monotonic() > deadline:
        sys.exit(f"the container did not deploy and start its worker in 600 s:\n{logs()}")
    time.sleep(3)
for deployment, params in (("retrain-on-drift/weekly-retrain", {"force": True}), ("score-customers/daily-scoring", {})):
    dep = api.get(f"/deployments/name/{deployment}").json()
    run = api.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": params}).json()
    started = time.monotonic()
    while True:
        state = api.get(f"/flow_runs/{run['id']}").json()["state"]
        if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        if time.monotonic() - started > 900:
            sys.exit(f"{deployment} not final after 900 s:\n{logs()}")
        time.sleep(3)
    name = api.get(f"/flow_runs/{run['id']}").json()["name"]
    print(f"   {deployment}: run {name} {state['type']} in {time.monotonic() - started:.0f} s")
    if state["type"] != "COMPLETED":
        sys.exit(f"{deployment} ended {state['type']}: {state.get('message')}\n{logs()}")
EOF
scored=$("$BIN/python" - "$database_url" <<'EOF'
import sys, sqlalchemy as sa
with sa.create_engine(sys.argv[1].replace("postgresql://", "postgresql+psycopg://", 1)).connect() as c:
    print(c.execute(sa.text("SELECT count(*) FROM customer_categories")).scalar_one())
EOF
)
echo "logs: $work (build.log, server.log)"
echo "OK: image built from $base_image with $engine ($($engine --version)); worker entrypoint ran weekly-retrain and daily-scoring to Completed; $scored customers scored; $(( $(date +%s) - started )) s in all ($(date -u +%F))"
