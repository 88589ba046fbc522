"""The web playground in a real headless Chromium (Debian's chromium + chromium-driver, selenium 4),
behind nginx in front of two API pods and one worker with a slow fake LLM.

One walk through the product as a newcomer does it: log in through the dev provider's page,
describe skills, answer every question, see the score; chat and watch the reply grow, stop a
reply, reload the page mid-reply and see it continue to the end with no duplicated text, and
kill the pod serving a reply and see it continue on the other one. Nothing may leave loopback
(every other host name fails to resolve), and the console must show no CSP violation and no
failed request. Screenshots go to tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.ports import free_port
from devstack.services import Api
from tests.conftest import Processes, isolated_url
from tests.support.browser import offline_chromium
from tests.test_proxy import Nginx, nginx_binary

SCREENSHOTS = Path(__file__).parent / "screenshots"
# About 3 s per reply: slow enough to stop it, reload mid-way and kill a pod under it.
SLOW_REPLY = {"FAKE_LLM_TOKEN_DELAY_MS": "40", "FAKE_LLM_REPLY_WORDS": "70"}
QUESTIONS = 4
WAIT = 15  # seconds any one step may take

pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) is not installed: make install")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class Site:
    url: str  # what the browser opens: nginx, or the one pod when nginx is missing
    pods: list[Api]
    proxied: bool
    start_pod: Callable[[int], Api]

    def kill_serving_pod(self) -> None:
        """SIGKILL the pod that holds the open stream, then start a new one on its port."""
        [serving] = [pod for pod in self.pods if open_streams(pod) >= 1]
        serving.kill()
        self.pods[self.pods.index(serving)] = self.start_pod(serving.port)


@pytest.fixture
def site(processes: Processes, redis_url: str) -> Iterator[Site]:
    url = isolated_url(redis_url)
    nginx_bin = nginx_binary()
    processes.worker(url, **SLOW_REPLY, QUESTION_COUNT=str(QUESTIONS))
    if nginx_bin is None:  # still the whole flow, on one pod
        pod = processes.api(url, PLAYGROUND="true")
        yield Site(pod.url, [pod], proxied=False, start_pod=lambda port: pod)
        return
    ports = free_port(), free_port()
    nginx = Nginx(ports)
    conf = nginx.dir / "nginx.conf"
    # A killed pod is skipped per connection attempt (refused: the next one), never marked down for
    # fail_timeout: its replacement takes requests as soon as it listens.
    text = conf.read_text()
    for port in ports:
        assert text.count(f"server 127.0.0.1:{port};") == 1
        text = text.replace(f"server 127.0.0.1:{port};", f"server 127.0.0.1:{port} max_fails=0;")
    conf.write_text(text)
    public = f"http://127.0.0.1:{nginx.port}"  # the dev provider sends the browser back here

    def start_pod(port: int) -> Api:
        return processes.api(url, PORT=str(port), PUBLIC_URL=public, PLAYGROUND="true")

    pods = [start_pod(port) for port in ports]
    nginx.start(nginx_bin)
    try:
        yield Site(public, pods, proxied=True, start_pod=start_pod)
    finally:
        nginx.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with offline_chromium() as driver:
        yield driver


class Page:
    """The playground as the test sees it."""

    def __init__(self, driver: Any, site: Site) -> None:
        self.driver = driver
        self.site = site
        self.console: list[dict] = []
        SCREENSHOTS.mkdir(exist_ok=True)

    def until(self, check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
        def attempt(_: Any) -> Any:
            try:
                return check()
            except StaleElementReferenceException:  # re-rendered meanwhile: look again
                return None

        try:
            return WebDriverWait(self.driver, within, poll_frequency=0.05).until(attempt)
        except TimeoutException:
            self.shot("failed")
            notice = self.js("return document.getElementById('notice-text').textContent")
            raise AssertionError(f"waiting for {what}: the page says {notice!r}; console {self.logs()}") from None

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def ready(self) -> None:
        self.until(lambda: self.js("return document.body.dataset.ready") == "true", "the page to start")

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(SCREENSHOTS / f"playground-{name}.png"))

    def logs(self) -> list[dict]:
        entries = self.driver.get_log("browser")
        self.console += entries
        return entries

    def token(self) -> str:
        return self.js("return sessionStorage.getItem('playground.token')")

    def stats(self) -> dict[str, int]:
        return self.js("return window.playgroundStats")

    def reply(self) -> Any:
        return self.all("#messages li.assistant")[-1]

    def reply_text(self) -> str:
        return self.reply().find_element(By.CSS_SELECTOR, ".content").text

    def reply_state(self) -> str:
        return self.reply().get_attribute("data-state")

    def send(self, prompt: str) -> None:
        self.until(lambda: self.find("#send").is_enabled(), "the previous reply to end")
        box = self.find("#prompt")
        box.send_keys(prompt)
        box.send_keys(Keys.ENTER)  # the keyboard way
        self.until(
            lambda: self.all("#messages li.user") and self.all("#messages li.user")[-1].text.endswith(prompt),
            "the prompt to show",
        )

    def wait_for_words(self, count: int) -> str:
        return self.until(lambda: len(self.reply_text().split()) >= count and self.reply_text(), f"{count} words")


def saved_reply(site: Site, token: str) -> tuple[str, dict]:
    """The last assistant message of the open chat, as the API has it, and the chat's reply state."""
    with httpx.Client(base_url=site.url, headers={"Authentication": f"Basic {token}"}, timeout=10) as http:
        chat_id = http.get("/assistant/chat").json()["chats"][0]["chatId"]
        chat = http.get(f"/assistant/chat/{chat_id}").json()
    return chat["messages"][-1]["content"], chat["reply"]


def open_streams(pod: Api) -> float:
    text = httpx.get(f"{pod.url}/metrics", timeout=5).text
    match = re.search(r"^ai_sse_open_streams (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


def test_the_whole_product_in_a_browser(site: Site, browser: Any) -> None:
    started = time.monotonic()
    page = Page(browser, site)
    browser.get(site.url + "/")
    page.ready()
    assert page.find("#login").is_displayed()
    page.shot("1-login")

    # Log in through the configured provider (the dev provider's page stands in for GitHub).
    page.find("#login-button").click()
    page.until(lambda: "/dev/login" in browser.current_url, "the provider's page")
    username = f"browser-{uuid.uuid4().hex[:8]}"
    field = page.find("input[name=username]")
    field.send_keys(username)
    field.submit()
    page.until(lambda: page.find("#account").is_displayed(), "the login to finish")
    page.ready()
    assert page.find("#whoami").text == username
    assert browser.current_url == site.url + "/"  # code and state are not left in the address bar

    # Describe skills; the questions arrive; answer them all; the score shows.
    page.find("#skill").send_keys("Python, asyncio, Redis streams and TypeScript")
    page.find("#skill-submit").click()
    page.until(lambda: len(page.all("#questions fieldset")) == QUESTIONS, "the questions")
    page.shot("2-questions")
    for fieldset in page.all("#questions fieldset"):
        fieldset.find_elements(By.CSS_SELECTOR, "input[type=radio]")[1].click()
    page.until(lambda: page.find("#interview").get_attribute("data-status") == "SUCCESS", "the interview to end")
    page.until(lambda: page.find("#score").is_displayed() and page.all("#questions .explanation"), "the score")
    info = httpx.get(site.url + "/user/info", headers={"Authentication": f"Basic {page.token()}"}).json()
    assert info["doneInterview"] is True
    assert page.find("#score").text == f"Your score: {info['interviewScore']} of {QUESTIONS} correct."
    assert len(page.all("#questions .correct")) == QUESTIONS
    page.shot("3-interview-done")

    # Chat: the reply grows while it streams, then ends.
    page.find("#chat-new").click()
    page.send("What is a closure?")
    seen = [len(page.wait_for_words(3))]
    for words in (12, 24):
        seen.append(len(page.wait_for_words(words)))
    assert page.reply_state() == "streaming" and seen == sorted(set(seen)), seen  # streamed, not all at once
    page.until(lambda: page.reply_state() == "done", "the reply to end")
    text, reply = saved_reply(site, page.token())
    assert page.reply_text() == text and text.startswith('(turn 1) You asked: "What is a closure?".')
    assert reply["status"] == "idle"
    assert "tokens" in page.reply().find_element(By.CSS_SELECTOR, ".meta").text  # the done event's usage
    page.shot("4-chat")

    # Stop a reply: what was written is kept, here and on the server.
    page.send("Tell me everything about Redis")
    page.wait_for_words(8)
    page.find("#stop").click()
    page.until(lambda: page.reply_state() == "stopped", "the reply to stop")
    text, _ = saved_reply(site, page.token())
    assert page.reply_text() == text and 8 <= len(text.split()) < 70
    page.shot("5-stopped")

    # Reload mid-reply: the page picks the reply up where it was (the browser's own EventSource, with
    # a stream ticket), with no duplicated text. Behind nginx, the pod serving that EventSource is
    # then killed: EventSource reconnects by itself (the same URL and ticket, Last-Event-ID) to the other.
    page.send("Explain asyncio")
    before = page.wait_for_words(15)
    browser.refresh()
    page.ready()
    page.until(
        lambda: page.all("#messages li.assistant") and page.reply_text().startswith(before),
        "the reply shown before the reload",
    )
    console = page.logs()
    if site.proxied:
        page.wait_for_words(len(before.split()) + 5)
        site.kill_serving_pod()
    page.until(lambda: page.reply_state() == "done", "the resumed reply to end")
    text, _ = saved_reply(site, page.token())
    assert page.reply_text() == text and len(text.split()) > 70
    # One EventSource, no recovery by the page: the browser reconnected it by itself.
    assert page.stats() == {"duplicates": 0, "fetchStreams": 0, "eventSources": 1, "recoveries": 0}
    page.shot("6-resumed-after-reload")
    cut = page.logs()

    if site.proxied:
        # Kill the pod that serves a prompt's POST stream: the page follows on with EventSource.
        page.send("Survive a dead pod")
        page.wait_for_words(10)
        site.kill_serving_pod()
        page.until(lambda: page.reply_state() == "done", "the reply to end on the other pod")
        text, _ = saved_reply(site, page.token())
        assert page.reply_text() == text and len(text.split()) > 70
        assert page.stats() == {"duplicates": 0, "fetchStreams": 1, "eventSources": 2, "recoveries": 0}
        assert not page.find("#notice").is_displayed()
        page.shot("7-after-pod-kill")
        # The streams cut by the kills are the only failures the console may show.
        cut += page.logs()
        cut = [e["message"] for e in cut if e["level"] in ("SEVERE", "WARNING")]
        assert len(cut) == 2 and all(m.startswith(f"{site.url}/assistant/chat/") and "net::ERR_" in m for m in cut), cut
        assert "/stream?ticket=" in cut[0] and "/stream" not in cut[1], cut  # the EventSource, then the POST
    else:
        console += cut

    # The chat list: a new chat, back to the first one (its whole history), delete the new one.
    turns = len(page.all("#messages li.user"))
    page.find("#chat-new").click()
    page.until(lambda: len(page.all("#chats li")) == 2 and not page.all("#messages li"), "a new, empty chat")
    [first] = [b for b in page.all("#chats .open") if b.get_attribute("aria-current") == "false"]
    first.click()
    page.until(lambda: len(page.all("#messages li.assistant")) == turns, "the first chat's history")
    [empty] = [b for b in page.all("#chats li") if "New chat" in b.text]
    empty.find_element(By.CSS_SELECTOR, ".delete").click()
    page.until(lambda: len(page.all("#chats li")) == 1, "the new chat to be deleted")
    assert len(page.all("#messages li.assistant")) == turns

    # A phone-sized window: everything fits its width.
    browser.set_window_size(390, 844)
    assert page.js("return document.documentElement.scrollWidth <= window.innerWidth")
    page.shot("8-phone")

    # Nothing but this origin was asked for, no policy was violated, no request failed.
    origins = set(page.js("return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"))
    assert origins <= {site.url}, origins
    problems = [e for e in console if e["level"] in ("SEVERE", "WARNING")]
    assert not [e for e in page.console if "Content Security Policy" in e["message"]], page.console
    assert not problems, problems
    assert time.monotonic() - started < 60
