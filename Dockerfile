# The worker image: the project installed with the README's own command
# (`make venv`: a venv from the hashed requirements.lock), then a Prefect
# process worker that deploys prefect.yaml and runs the flows in this folder.
# BASE_IMAGE: any Debian-based image with Python 3.11 (python3 -m venv);
# scripts/check_image.sh passes a locally made one when no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

RUN command -v make >/dev/null \
 || (apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*)

WORKDIR /app
# Dependencies first so code changes do not reinstall them.
COPY pyproject.toml requirements.lock Makefile README.md ./
COPY payer_scoring/__init__.py payer_scoring/__init__.py
RUN mkdir -p flows tasks models entrypoints && touch flows/__init__.py tasks/__init__.py models/__init__.py entrypoints/__init__.py \
 && make venv
COPY . .
RUN make venv

ENV PATH="/app/.venv/bin:${PATH}" \
    PAYER_SCORING_HOME=/app \
    DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY=60

CMD ["bash", "docker/worker-entrypoint.sh"]
