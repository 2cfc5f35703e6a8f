"""Deployment files are checked without Docker (none runs on the build machine):
docker-compose.yml against the Compose specification schema, every variable it
uses documented in .env.example, the Dockerfile installing with the README's
command, and prefect.yaml's entrypoints resolving to flows of the same name."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose_schema() -> dict:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def test_docker_compose_validates_against_the_compose_specification():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, _compose_schema())
    assert {"postgres", "prefect-server", "worker"} <= set(compose["services"])
    worker = compose["services"]["worker"]
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["postgres"] and "healthcheck" in compose["services"]["prefect-server"]
    assert any(v.startswith("models:") for v in worker["volumes"])
    assert compose["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://"
    )


def test_a_broken_compose_file_is_rejected_by_the_schema():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["worker"]["depends_on"]["postgres"]["condition"] = "when_it_feels_like_it"
    try:
        jsonschema.validate(compose, _compose_schema())
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted an invalid depends_on condition")


def test_every_variable_in_docker_compose_is_documented_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used, "no variables found: the regex is wrong"
    assert used <= documented, f"undocumented: {sorted(used - documented)}"


def test_telemetry_is_off_in_every_compose_service_that_runs_prefect_or_gx():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("prefect-server", "worker"):
        env = compose["services"][name]["environment"]
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1", name
    assert compose["services"]["worker"]["environment"]["GX_ANALYTICS_ENABLED"] == "false"


def test_dockerfile_installs_with_the_readme_command():
    readme = (ROOT / "README.md").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "make venv" in dockerfile
    assert re.search(r"^make (demo|test)\b", readme, re.M), "README quickstart lost its make commands"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: venv", makefile, re.M) and re.search(r"^test: venv", makefile, re.M)
    # The dependency layer installs the project before the code is copied:
    # every package pyproject.toml names must exist by then.
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    premade = re.search(r"^RUN mkdir -p ([^&]+)&&", dockerfile, re.M).group(1).split()
    copied = re.findall(r"^COPY (\w+)/__init__\.py", dockerfile, re.M)
    assert sorted(packages) == sorted(premade + copied)


def test_prefect_yaml_entrypoints_resolve_to_flows_named_in_the_file():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"daily-scoring", "weekly-retrain"}
    assert deployments["daily-scoring"]["schedules"][0] == {"cron": "0 6 * * *", "timezone": "America/Sao_Paulo", "active": True}
    assert deployments["weekly-retrain"]["schedules"][0]["cron"] == "0 3 * * 1"
    assert deployments["daily-scoring"]["concurrency_limit"] == 1
    assert config["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $PAYER_SCORING_HOME }}"
    expected_function = {"daily-scoring": "score_customers", "weekly-retrain": "retrain_on_drift"}
    for name, deployment in deployments.items():
        path, function = deployment["entrypoint"].split(":")
        assert function == expected_function[name]
        spec = importlib.util.spec_from_file_location(f"_entry_{function}", ROOT / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        flow = getattr(module, function)
        assert flow.__class__.__name__ == "Flow", f"{deployment['entrypoint']} is not a Prefect flow"
        params = set(flow.parameters.properties)
        assert set(deployment["parameters"]) <= params, f"{name}: unknown parameters {set(deployment['parameters']) - params}"
