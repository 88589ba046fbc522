"""The deployment files agree with the code: images, commands, ports, probes, setting names."""

from __future__ import annotations

from pathlib import Path

import yaml

from backend.store import keys
from config.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTINGS = set(Settings.model_fields)
IMAGE = "ai-interview-backend:latest"


def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in k8s_documents() if doc["kind"] == kind}


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_names(spec: dict) -> set[str]:
    return {item["name"] for item in spec.get("env", [])}


def test_every_manifest_parses_with_known_kinds() -> None:
    kinds = {doc["kind"] for doc in k8s_documents()}
    assert kinds == {"ConfigMap", "Secret", "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler",
                     "ScaledObject"}


def test_config_and_secret_keys_are_settings() -> None:
    for kind in ("ConfigMap", "Secret"):
        for doc in by_kind(kind).values():
            names = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            assert names <= SETTINGS, names - SETTINGS
    assert Settings(**{k: v for k, v in by_kind("ConfigMap")["ai-backend-config"]["data"].items()},
                    OAUTH_CLIENT_ID="x", OPENAI_API_KEY="y")  # the production config validates


def test_api_deployment_service_and_autoscaler() -> None:
    api = by_kind("Deployment")["ai-backend-api"]
    c = container(api)
    assert c["image"] == IMAGE and c["command"] == ["python", "-m", "backend"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert set(env) <= SETTINGS
    [port] = c["ports"]
    assert port["containerPort"] == int(env["PORT"]) and env["HOST"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    service = by_kind("Service")["ai-backend-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    hpa = by_kind("HorizontalPodAutoscaler")["ai-backend-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ai-backend-api"


def test_api_trusts_exactly_its_ingress_as_proxy() -> None:
    env = {e["name"]: e["value"] for e in container(by_kind("Deployment")["ai-backend-api"])["env"]}
    assert env["PROXIES_COUNT"] == "1"  # the ingress controller appends the client to X-Forwarded-For
    ingress = by_kind("Ingress")["ai-backend-api"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "ai-backend-api", "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE


def test_compose_settings_start() -> None:
    """Every compose service's environment passes the start-up checks (the dev login on 0.0.0.0 is
    allowed explicitly for the demo; there is no proxy in front, so none is trusted)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if name != "redis":
            settings = Settings(_env_file=None, **service["environment"])
            assert settings.ALLOW_DEV_LOGIN and settings.HOST == "0.0.0.0" and settings.PROXIES_COUNT == 0


def test_worker_deployment_and_keda_scaler_match_the_job_stream() -> None:
    worker = by_kind("Deployment")["ai-backend-worker"]
    c = container(worker)
    assert c["image"] == IMAGE and c["command"] == ["python", "-m", "workers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert set(env) <= SETTINGS
    [port] = c["ports"]
    assert port["containerPort"] == int(env["WORKER_METRICS_PORT"])
    assert c["livenessProbe"]["httpGet"]["port"] == port["name"]
    scaled = by_kind("ScaledObject")["ai-backend-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ai-backend-worker"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == keys.JOBS
    assert trigger["metadata"]["consumerGroup"] == keys.JOB_GROUP


def test_compose_runs_two_apis_two_workers_and_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api-1", "api-2", "worker-1", "worker-2"}
    for name, service in services.items():
        if name == "redis":
            continue
        assert service["image"] == IMAGE
        assert set(service["environment"]) <= SETTINGS, set(service["environment"]) - SETTINGS
        role = "backend" if name.startswith("api") else "workers"
        assert service["command"] == ["python", "-m", role]
        if role == "backend":
            assert service["ports"][0].endswith(":" + service["environment"]["PORT"])
            assert "/ready" in " ".join(service["healthcheck"]["test"])


def test_dockerfile_runs_as_non_root_with_python_m_backend() -> None:
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2  # multi-stage
    assert "USER app" in dockerfile and 'CMD ["python", "-m", "backend"]' in dockerfile
    assert "EXPOSE 8000" in dockerfile
    # The image binds 0.0.0.0: with its defaults (dev login) it refuses to start until configured.
    env_lines = [line for line in dockerfile.splitlines() if line.startswith("ENV ")]
    assert any("HOST=0.0.0.0" in line for line in env_lines)
    assert not any("ALLOW_DEV_LOGIN" in line or "AUTH_PROVIDER" in line for line in env_lines)
