"""deploy/k8s/ manifests validate against the Kubernetes schemas, offline, and wire the API as documented.

The schemas ship inside the kubernetes-validate package (no network): a test
below checks that by blocking sockets while it validates.
"""

from __future__ import annotations

import socket
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str, name: str) -> dict:
    return next(d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    docs = _documents()
    assert {d["kind"] for _, d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret",
                                             "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim"}
    for name, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError naming the field


def test_a_broken_manifest_is_rejected():
    deployment = _by_kind("Deployment", "payer-scoring-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    typo = _by_kind("Service", "payer-scoring-api")
    typo["spec"]["selectr"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def test_api_deployment_probes_settings_service_and_autoscaler_fit_together():
    deployment = _by_kind("Deployment", "payer-scoring-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["payer-scoring", "api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    sources = {s.get("configMapRef", s.get("secretRef"))["name"] for s in container["envFrom"]}
    assert sources == {"payer-scoring-api"}
    secret = _by_kind("Secret", "payer-scoring-api")["stringData"]
    assert secret["PAYER_SCORING_API_DATABASE_URL"].startswith("postgresql://api_reader:")
    assert "DATABASE_URL" not in secret  # the service never gets the owner's URL
    config = _by_kind("ConfigMap", "payer-scoring-api")["data"]
    from payer_scoring.settings import Settings

    names = {f"PAYER_SCORING_{f.upper()}" for f in Settings.model_fields}
    assert {k for k in {**config, **secret} if k.startswith("PAYER_SCORING_")} <= names
    service = _by_kind("Service", "payer-scoring-api")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    hpa = _by_kind("HorizontalPodAutoscaler", "payer-scoring-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "payer-scoring-api" and hpa["spec"]["minReplicas"] >= 2
    worker = _by_kind("Deployment", "prefect-worker")["spec"]["template"]["spec"]
    assert worker["containers"][0]["command"][-2:] == ["--type", "kubernetes"]
    assert worker["serviceAccountName"] == _by_kind("ServiceAccount", "prefect-worker")["metadata"]["name"]
