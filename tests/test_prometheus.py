"""The alert rules and the Grafana dashboard (deploy/prometheus, deploy/grafana) against Prometheus.

- `promtool check rules` and `promtool test rules`: every alert has input series that fire it and
  series that must not (deploy/prometheus/rules.test.yml).
- The Prometheus Operator's PrometheusRule holds exactly the same groups.
- A real Prometheus (Debian's package, on loopback, this test's own process) scrapes a running API
  (on METRICS_PORT) and worker after a skill description and two prompts were served, evaluating
  the rules every second. Then every dashboard query and every rule expression goes through its
  HTTP API: none errors; every selector of a metric the service exports returns series (with the
  labels the expression matches on); every dashboard query and recording rule whose metrics are
  all exported returns series.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devstack.login import auth, dev_login
from devstack.ports import free_port, wait_for_port
from tests.conftest import Processes, eventually, isolated_url
from tests.test_chat import new_chat, send
from tests.test_interview import describe, ready_questions

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "ai-backend.json"
OPERATOR = DEPLOY / "prometheus-operator" / "monitoring.yaml"

# A vector selector: a metric name (not a function: no "(" follows) and its optional matchers.
SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
KEYWORDS = {"sum", "max", "min", "count", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
            "or", "unless", "offset", "bool", "le", "scalar", "rate", "histogram_quantile", "inf", "nan"}  # fmt: skip


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install -y prometheus; .ci/run installs it)")
    return found


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, matchers) of every vector selector in a PromQL expression (ours: no strings but labels)."""
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    found = []
    for match in SELECTOR.finditer(re.sub(r"\[[^\]]*\]", " ", without_groupings)):
        name, braces = match.group(1), match.group(2) or ""
        if name in KEYWORDS or re.fullmatch(r"[\d.e]+", name):
            continue
        found.append((name, MATCHER.findall(braces)))
    return found


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = binary("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=300, cwd=RULE_TESTS.parent
    )
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    assert len(alerts) == 12 and fired == alerts and quiet == alerts, (alerts - fired, alerts - quiet)


def test_the_operator_rules_are_the_same_rules() -> None:
    documents = list(yaml.safe_load_all(OPERATOR.read_text()))
    [rule] = [doc for doc in documents if doc["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    jobs = {
        doc["metadata"]["name"]: doc["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["replacement"]
        for doc in documents
        if doc["kind"] == "PodMonitor"
    }
    assert jobs == {
        "ai-backend-api": "ai-backend-api",
        "ai-backend-worker": "ai-backend-worker",
    }  # as the rules match `up`


def test_selectors_are_found() -> None:
    assert selectors('sum by (le) (rate(a_bucket{le="2.5", x!="y"}[5m])) / up{job="j"} > scalar(max(b))') == [
        ("a_bucket", [("le", "=", "2.5"), ("x", "!=", "y")]),
        ("up", [("job", "=", "j")]),
        ("b", []),
    ]
    assert selectors("max(ai_jobs_dead) - max(ai_jobs_dead offset 15m) > 0") == [("ai_jobs_dead", [])] * 2


class Prometheus:
    def __init__(self, targets: dict[str, int]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for job, port in targets.items()
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(self.dir / "prometheus.log", "wb")  # closed in stop()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, process=self.process, timeout=30)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def prometheus_binary() -> str:
    return binary("prometheus")


def exported_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


async def test_dashboard_and_rules_evaluate_against_a_running_service(
    processes: Processes, redis_url: str, prometheus_binary: str
) -> None:
    url = isolated_url(redis_url)
    api_metrics, worker_metrics = free_port(), free_port()
    api = processes.api(url, METRICS_PORT=str(api_metrics))
    processes.worker(url, WORKER_METRICS_PORT=str(worker_metrics))
    for port in (api_metrics, worker_metrics):
        wait_for_port(port)
    prometheus = Prometheus({"ai-backend-api": api_metrics, "ai-backend-worker": worker_metrics}).start()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=20) as http:
            user = auth(await dev_login(http))
            await describe(http, user)
            await ready_questions(http, user)
            chat_id = await new_chat(http, user)
            for prompt in ("first prompt", "second prompt"):
                await send(http, user, chat_id, prompt)
            exported = {"up"}
            for port in (api_metrics, worker_metrics):
                exported |= exported_names((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
        assert {"ai_replies_total", "ai_reply_first_event_seconds_bucket", "ai_llm_errors_total"} <= exported
        assert {"ai_api_ready", "ai_api_queue_max_wait_seconds", "ai_jobs_dead"} <= exported

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prometheus.port}", timeout=20) as prom:

            async def query(expr: str) -> list[dict]:
                answer = await prom.get("/api/v1/query", params={"query": expr})
                body = answer.json()
                assert answer.status_code == 200 and body["status"] == "success", (expr, body)
                return body["data"]["result"]

            # Scraped, both jobs up, the replies counted, the recording rules evaluated at least once.
            await eventually(lambda: _count(query('up{job=~"ai-backend-.*"} == 1'), 2), within=30)
            await eventually(lambda: _count(query('ai_replies_total{outcome="done"} > 0'), 1), within=30)
            await eventually(lambda: _count(query("ai_reply_first_event_seconds_count > 0"), 1), within=30)
            await eventually(lambda: _count(query("ai:replies_not_done:ratio_rate5m"), 1), within=30)
            # Two more scrapes of both after the last prompt: every rate() window holds the prompts' samples.
            served = time.time()
            await eventually(
                lambda: _count(query(f"timestamp(up{{job=~'ai-backend-.*'}}) > {served + 1.5}"), 2), within=30
            )

            checked = 0
            expressions = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
            for expr in expressions:
                expr = expr.replace("$__rate_interval", "1m")
                result = await query(expr)  # every one evaluates without an error
                names = selectors(expr)
                unknown = {n for n, _ in names if not n.startswith("ai:")} - exported
                assert not unknown, (expr, unknown)  # a typo, or a metric nobody exports
                for name, matchers in names:
                    if name.startswith("ai:") or name not in exported:
                        continue
                    exact = ",".join(f'{label}{op}"{value}"' for label, op, value in matchers if op in ("=", "!="))
                    series = await query(f"{name}{{{exact}}}")
                    assert series, (expr, name, exact)
                    for label, _, _ in matchers:  # the labels it matches on exist on that metric
                        assert any(label in s["metric"] for s in series), (expr, name, label)
                    checked += 1
                plain = not re.search(r"[<>]|==|!= *\d", expr)  # no threshold: an alert's filter may be empty
                if plain and all(n in exported or n.startswith("ai:") for n, _ in names):
                    assert result, expr
            assert checked >= 50, checked
            for rule in alert_rules():
                if "record" in rule:
                    assert await query(rule["record"]), rule["record"]
            # A healthy service, just started: nothing fires (pending is allowed). Time to first event
            # is left out: on a loaded machine one of two prompts may start later than 2.5 s.
            firing = [a["metric"]["alertname"] for a in await query('ALERTS{alertstate="firing"}')]
            assert [name for name in firing if not name.startswith("AiReplyFirstEvent")] == [], firing
    finally:
        prometheus.stop()


async def _count(results: object, at_least: int) -> bool:
    return len(await results) >= at_least  # type: ignore[misc,arg-type]
