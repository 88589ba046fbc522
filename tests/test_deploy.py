"""The deployment files agree with the code: images, commands, ports, probes, setting names,
security, disruption budgets and the autoscalers' signals."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from backend.ops import metrics
from backend.store import keys
from config.settings import Settings
from workers.health import LoopHeartbeat, health_app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SETTINGS = set(Settings.model_fields)
IMAGE = "ai-interview-backend"  # the manifests' name for it; kustomization.yaml sets registry and tag
KEDA = "keda.sh/v1alpha1"  # custom resources: no schema in kubernetes-validate


def kustomization() -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())


def k8s_documents() -> list[dict]:
    """Every object `kubectl apply -k deploy/k8s` creates, in its files' order."""
    docs = []
    for name in kustomization()["resources"]:
        docs += [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in k8s_documents() if doc["kind"] == kind}


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_names(spec: dict) -> set[str]:
    return {item["name"] for item in spec.get("env", [])}


def env_values(spec: dict) -> dict[str, str]:
    """The literal values of a container's env (those from a Secret are left out)."""
    return {item["name"]: item["value"] for item in spec.get("env", []) if "value" in item}


def secret_value(name: str, key: str) -> str:
    return by_kind("Secret")[name]["stringData"][key]


def test_every_manifest_parses_with_known_kinds() -> None:
    kinds = {doc["kind"] for doc in k8s_documents()}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
    }
    files = {path.name for path in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization()["resources"]) == sorted(files)  # no file left out of `apply -k`


def test_manifests_are_valid_kubernetes_objects() -> None:
    """The Kubernetes schemas, strictly (an unknown or misplaced field fails), offline."""
    version = kubernetes_validate.latest_version()
    for doc in k8s_documents():
        if doc["apiVersion"] != KEDA:
            kubernetes_validate.validate(doc, version, strict=True)


def test_config_and_secret_keys_are_settings() -> None:
    """What the pods take whole (envFrom) is settings only; other Secrets are read key by key."""
    sources = {
        (kind, source[ref]["name"])
        for deployment in by_kind("Deployment").values()
        for source in container(deployment)["envFrom"]
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef"))
        if ref in source
    }
    assert {("ConfigMap", "ai-backend-config"), ("Secret", "ai-backend-secrets")} <= sources
    for kind, name in sources:
        doc = by_kind(kind)[name]
        names = set(doc.get("data", {})) | set(doc.get("stringData", {}))
        assert names <= SETTINGS, names - SETTINGS
    for deployment in by_kind("Deployment").values():
        for item in container(deployment)["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["key"] in by_kind("Secret")[ref["name"]]["stringData"]
    assert Settings(
        **{k: v for k, v in by_kind("ConfigMap")["ai-backend-config"]["data"].items()},
        OAUTH_CLIENT_ID="x",
        OPENAI_API_KEY="y",
    )  # the production config validates


def test_api_deployment_service_and_autoscaler() -> None:
    api = by_kind("Deployment")["ai-backend-api"]
    c = container(api)
    assert c["image"] == IMAGE and c["command"] == ["python", "-m", "backend"]
    env = env_values(c)
    assert env_names(c) <= SETTINGS
    [port] = [p for p in c["ports"] if p["name"] == "http"]
    assert port["containerPort"] == int(env["PORT"]) and env["HOST"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    service = by_kind("Service")["ai-backend-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    hpa = by_kind("HorizontalPodAutoscaler")["ai-backend-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ai-backend-api"
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in api["spec"]  # the autoscaler owns the count; applying the file never resets it


@pytest.mark.parametrize(
    ("name", "setting"), [("ai-backend-api", "METRICS_PORT"), ("ai-backend-worker", "WORKER_METRICS_PORT")]
)
def test_metrics_are_scraped_on_their_own_port_that_nothing_public_routes_to(name: str, setting: str) -> None:
    deployment = by_kind("Deployment")[name]
    c = container(deployment)
    metrics_port = int(env_values(c)[setting])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == metrics_port and list(ports.values()).count(metrics_port) == 1
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == metrics_port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"
    routed = {
        (service["metadata"]["name"], port.get("targetPort"))
        for service in by_kind("Service").values()
        if service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        for port in service["spec"]["ports"]
    }
    assert all(target not in ("metrics", metrics_port) for _, target in routed), routed
    services = by_kind("Service")
    for ingress in by_kind("Ingress").values():  # the ingress reaches a Service port that targets `http` only
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                [target] = [
                    p["targetPort"]
                    for p in services[backend["name"]]["spec"]["ports"]
                    if p["name"] == backend["port"]["name"]
                ]
                assert target == "http" and not path["path"].startswith("/metrics")


def test_api_trusts_exactly_its_ingress_as_proxy() -> None:
    env = env_values(container(by_kind("Deployment")["ai-backend-api"]))
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


def test_compose_publishes_ports_on_loopback_only() -> None:
    """It allows the dev login (anyone logs in as anyone): no published port may face a network."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    published = [(name, port) for name, service in compose["services"].items() for port in service.get("ports", [])]
    assert len(published) == 2, published
    for name, port in published:
        host, _, _ = str(port).rpartition(":")[0].rpartition(":")  # HOST:PUBLISHED:TARGET
        assert host == "127.0.0.1", (name, port)


def test_worker_deployment_probes_that_its_event_loop_turns() -> None:
    worker = by_kind("Deployment")["ai-backend-worker"]
    c = container(worker)
    assert c["image"] == IMAGE and c["command"] == ["python", "-m", "workers"]
    env = env_values(c)
    assert env_names(c) <= SETTINGS
    [port] = c["ports"]
    assert port["containerPort"] == int(env["WORKER_METRICS_PORT"])
    assert "replicas" not in worker["spec"]  # KEDA owns the count
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    statuses: list[str] = []  # the path the worker serves: 200 while its loop turns (workers/health.py)
    health_app(LoopHeartbeat())({"PATH_INFO": "/healthz"}, lambda status, headers: statuses.append(status))
    assert statuses == ["200 OK"]
    # The kubelet's SIGKILL never cuts a worker's drain short.
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(
        env["WORKER_SHUTDOWN_GRACE_SECONDS"]
    )


def test_keda_scales_workers_on_the_lag_and_pending_jobs_of_both_job_streams() -> None:
    scaled = by_kind("ScaledObject")["ai-backend-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ai-backend-worker"
    triggers = [t for t in scaled["spec"]["triggers"] if t["type"] == "redis-streams"]
    for stream in keys.JOB_STREAMS.values():
        signals = sorted(
            key
            for t in triggers
            if t["metadata"]["stream"] == stream
            for key in ("lagCount", "pendingEntriesCount")
            if key in t["metadata"]
        )
        assert signals == ["lagCount", "pendingEntriesCount"], stream  # one trigger each (KEDA reads lag first)
    redis_url = urlsplit(secret_value("ai-backend-redis", "url"))  # the pods' REDIS_URL
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["stream"] in keys.JOB_STREAMS.values() and meta["consumerGroup"] == keys.JOB_GROUP
        assert meta["address"] == f"{redis_url.hostname}:{redis_url.port}"
        assert meta["databaseIndex"] == (redis_url.path.strip("/") or "0")
        auth = by_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
        [password] = [ref for ref in auth["spec"]["secretTargetRef"] if ref["parameter"] == "password"]
        assert secret_value(password["name"], password["key"]) == redis_url.password  # one password, from a Secret


def test_keda_adds_workers_before_the_api_sheds_load() -> None:
    scaled = by_kind("ScaledObject")["ai-backend-worker"]
    [wait] = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    names = set(re.findall(r"ai_[a-z_]+", wait["metadata"]["query"]))
    source = Path(metrics.__file__).read_text()
    assert names == {"ai_jobs_oldest_wait_seconds"}
    assert re.search(r'GaugeMetricFamily\(\s*"ai_jobs_oldest_wait_seconds"', source)  # a gauge: its value, no rate()
    settings = Settings(
        _env_file=None, **by_kind("ConfigMap")["ai-backend-config"]["data"], OAUTH_CLIENT_ID="x", OPENAI_API_KEY="y"
    )
    assert 0 < float(wait["metadata"]["threshold"]) < settings.QUEUE_MAX_WAIT_SECONDS
    assert wait["metricType"] == "Value"  # replicas in proportion to the wait, not wait / threshold


@pytest.mark.parametrize("name", ["ai-backend-api", "ai-backend-worker"])
def test_pods_run_unprivileged_on_a_read_only_root(name: str) -> None:
    deployment = by_kind("Deployment")[name]
    pod, c = deployment["spec"]["template"]["spec"], container(deployment)
    effective = {**pod["securityContext"], **c["securityContext"]}
    [uid] = re.findall(r"^USER (\d+):\d+$", (DEPLOY.parent / "Dockerfile").read_text(), re.MULTILINE)
    assert effective["runAsNonRoot"] is True and effective["runAsUser"] == int(uid)
    assert effective["allowPrivilegeEscalation"] is False and effective["readOnlyRootFilesystem"] is True
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {mount["mountPath"]: mount["name"] for mount in c.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    if int(env_values(c).get("API_WORKERS", "1")) > 1:  # multiprocess metrics in a temp dir (backend/__main__.py)
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_every_deployment_has_a_disruption_budget_that_lets_drains_proceed() -> None:
    budgets = by_kind("PodDisruptionBudget").values()
    for name, deployment in by_kind("Deployment").items():
        [budget] = [b for b in budgets if b["spec"]["selector"] == deployment["spec"]["selector"]]
        assert budget["spec"]["maxUnavailable"] >= 1, name  # 0 (or minAvailable = replicas) blocks every drain


def test_every_deployment_has_a_startup_probe_on_its_liveness_path() -> None:
    for name, deployment in by_kind("Deployment").items():
        c = container(deployment)
        assert c["startupProbe"]["httpGet"] == c["livenessProbe"]["httpGet"], name


def test_the_image_is_named_in_one_place() -> None:
    [image] = kustomization()["images"]
    assert image["name"] == IMAGE and image["newTag"] not in ("", "latest")
    for deployment in by_kind("Deployment").values():
        assert container(deployment)["image"] == IMAGE  # no tag of its own: kustomize sets it


def test_compose_runs_two_apis_two_workers_and_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api-1", "api-2", "worker-1", "worker-2"}
    [image] = {service["image"] for name, service in services.items() if name != "redis"}  # one image
    assert re.fullmatch(r"\$\{AI_BACKEND_IMAGE:-ai-interview-backend:[\w.-]+\}", image) and "latest" not in image
    for name, service in services.items():
        if name == "redis":
            continue
        assert set(service["environment"]) <= SETTINGS, set(service["environment"]) - SETTINGS
        role = "backend" if name.startswith("api") else "workers"
        assert service["command"] == ["python", "-m", role]
        check = " ".join(service["healthcheck"]["test"])
        if role == "backend":
            assert service["ports"][0].endswith(":" + service["environment"]["PORT"])
            assert "/ready" in check
        else:  # its own check, not the image's (the API's): the event loop turns
            assert f"127.0.0.1:{service['environment']['WORKER_METRICS_PORT']}/healthz" in check
            drain = Settings(_env_file=None, **service["environment"]).WORKER_SHUTDOWN_GRACE_SECONDS
            assert float(service["stop_grace_period"].removesuffix("s")) > drain  # Docker's default: 10 s
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"] and "/tmp" in service["tmpfs"]


def test_dockerfile_runs_as_non_root_with_python_m_backend() -> None:
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") == 2  # multi-stage
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.MULTILINE) and 'CMD ["python", "-m", "backend"]' in dockerfile
    assert "EXPOSE 8000" in dockerfile
    # The image binds 0.0.0.0: with its defaults (dev login) it refuses to start until configured.
    env_lines = [line for line in dockerfile.splitlines() if line.startswith("ENV ")]
    assert any("HOST=0.0.0.0" in line for line in env_lines)
    assert not any("ALLOW_DEV_LOGIN" in line or "AUTH_PROVIDER" in line for line in env_lines)


def test_dockerfile_builds_from_a_pinned_base_and_the_runtime_lock_only() -> None:
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", base)  # a tag for people, a digest for builds
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert "pip install --no-cache-dir --require-hashes -r requirements.txt" in dockerfile
    assert "--no-deps --no-build-isolation --no-index ." in dockerfile  # the project: nothing resolved or fetched
    assert "requirements-dev" not in dockerfile and "[dev]" not in dockerfile
