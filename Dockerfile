# The worker image: the project installed with the README's own command
# (`make venv`: a venv from the hashed requirements.lock), then a Prefect
# process worker that deploys prefect.yaml and runs the flows in this folder.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

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
    PREFECT_SERVER_ANALYTICS_ENABLED=false

CMD ["bash", "docker/worker-entrypoint.sh"]
