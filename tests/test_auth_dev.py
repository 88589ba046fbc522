"""Login with the built-in dev provider, sessions, headers, logout."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlparse

import httpx

from devstack.login import auth, dev_code, dev_login
from tests.conftest import Processes, isolated_url


async def test_full_dev_login_and_user_info(client: httpx.AsyncClient) -> None:
    auth_code = await client.get("/user/auth-code")
    assert auth_code.status_code == 200
    body = auth_code.json()
    assert set(body) == {"loginUrl", "state"} and len(body["state"]) >= 22
    assert "code_challenge=" in body["loginUrl"] and "code_challenge_method=S256" in body["loginUrl"]
    token = await dev_login(client, "Alice Example")
    assert len(token.partition(".")[2]) >= 43  # 256 random bits
    info = await client.get("/user/info", headers=auth(token))
    assert info.status_code == 200
    user = info.json()
    assert set(user) == {
        "userId",
        "username",
        "createdAt",
        "skillDescription",
        "doneInterview",
        "interviewQuestionStatus",
    }
    assert isinstance(user["userId"], int) and user["userId"] > 0
    assert user["username"] == "Alice Example"
    assert isinstance(user["createdAt"], int) and user["createdAt"] > 1_600_000_000_000
    assert user["skillDescription"] == "" and user["doneInterview"] is False
    assert user["interviewQuestionStatus"] == "NOT_STARTED"


async def test_dev_login_url_is_a_page_asking_for_a_user_name(client: httpx.AsyncClient) -> None:
    login_url = (await client.get("/user/auth-code")).json()["loginUrl"]
    page = await client.get(login_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/dev/login">' in page.text and 'name="username"' in page.text
    query = dict(parse_qsl(urlparse(login_url).query))
    assert f'value="{query["state"]}"' in page.text
    missing = await client.get("/dev/login")
    assert missing.status_code == 400 and missing.json()["message"]


async def test_same_identity_logs_into_same_user(client: httpx.AsyncClient) -> None:
    first = (await client.get("/user/info", headers=auth(await dev_login(client, "bob-same")))).json()
    second = (await client.get("/user/info", headers=auth(await dev_login(client, "bob-same")))).json()
    assert first["userId"] == second["userId"] and first["createdAt"] == second["createdAt"]


async def test_two_racing_first_logins_get_one_user(client: httpx.AsyncClient) -> None:
    codes = await asyncio.gather(*(dev_code(client, "racer-one") for _ in range(8)))
    responses = await asyncio.gather(
        *(client.get("/user/auth-callback", params={"code": code, "state": state}) for code, state in codes)
    )
    tokens = [r.json()["token"] for r in responses]
    ids = {(await client.get("/user/info", headers=auth(t))).json()["userId"] for t in tokens}
    assert len(ids) == 1


async def test_state_is_single_use(client: httpx.AsyncClient) -> None:
    code, state = await dev_code(client, "replayer")
    assert (await client.get("/user/auth-callback", params={"code": code, "state": state})).status_code == 200
    replay = await client.get("/user/auth-callback", params={"code": code, "state": state})
    assert replay.status_code == 400 and "state" in replay.json()["message"]


async def test_unknown_state_and_missing_params(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/user/auth-callback", params={"code": "x", "state": "never-issued"})
    assert unknown.status_code == 400 and unknown.json()["message"]
    missing = await client.get("/user/auth-callback", params={"state": "abc"})
    assert missing.status_code == 400 and "code" in missing.json()["message"]


async def test_expired_state(client: httpx.AsyncClient, redis_client) -> None:
    code, state = await dev_code(client, "slowpoke")
    redis_client.delete(f"ai:{{oauth}}:state:{state}")  # what the 10-minute TTL does
    response = await client.get("/user/auth-callback", params={"code": code, "state": state})
    assert response.status_code == 400


async def test_wrong_code(client: httpx.AsyncClient) -> None:
    _, state = await dev_code(client, "wrong-code")
    response = await client.get("/user/auth-callback", params={"code": "not-the-code", "state": state})
    assert response.status_code == 400 and "code" in response.json()["message"]


async def test_pkce_binds_code_to_its_login(client: httpx.AsyncClient) -> None:
    """A code issued for one login's challenge is refused with another login's verifier."""
    code, _ = await dev_code(client, "pkce-user")
    _, other_state = await dev_code(client, "pkce-user")
    response = await client.get("/user/auth-callback", params={"code": code, "state": other_state})
    assert response.status_code == 400 and "PKCE" in response.json()["message"]


async def test_both_header_forms_and_malformed_ones(client: httpx.AsyncClient) -> None:
    token = await dev_login(client)
    assert (await client.get("/user/info", headers={"Authentication": f"Basic {token}"})).status_code == 200
    assert (await client.get("/user/info", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    for headers in (
        {},
        {"Authentication": token},
        {"Authentication": "Basic"},
        {"Authentication": "Digest x"},
        {"Authentication": f"Basic {token} extra"},
        {"Authorization": "Bearer 1.short"},
        {"Authentication": "Basic " + token[:-1] + ("A" if token[-1] != "A" else "B")},
        {"Authentication": "Basic ../../etc"},
    ):
        response = await client.get("/user/info", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["message"]


async def test_logout_invalidates_token_everywhere(
    client: httpx.AsyncClient, processes: Processes, redis_url: str
) -> None:
    other_pod = processes.api(redis_url)
    token = await dev_login(client)
    async with httpx.AsyncClient(base_url=other_pod.url) as other:
        assert (await other.get("/user/info", headers=auth(token))).status_code == 200
        logout = await client.post("/user/logout", headers=auth(token))
        assert logout.status_code == 200 and logout.json()["message"]
        assert (await other.get("/user/info", headers=auth(token))).status_code == 401
    assert (await client.get("/user/info", headers=auth(token))).status_code == 401
    assert (await client.post("/user/logout", headers=auth(token))).status_code == 401


async def test_only_token_hash_is_stored(client: httpx.AsyncClient, redis_client) -> None:
    token = await dev_login(client)
    user_id = token.partition(".")[0]
    sessions = list(redis_client.scan_iter(f"ai:{{u:{user_id}}}:session:*"))
    assert sessions and all(token not in key and token.partition(".")[2] not in key for key in sessions)
    for key in redis_client.scan_iter("ai:*"):
        if redis_client.type(key) == "string":
            assert token.partition(".")[2] not in (redis_client.get(key) or "")


async def test_token_expiry(processes: Processes, redis_url: str) -> None:
    api = processes.api(redis_url, SESSION_TTL_SECONDS="1")
    async with httpx.AsyncClient(base_url=api.url) as http:
        token = await dev_login(http)
        assert (await http.get("/user/info", headers=auth(token))).status_code == 200
        await asyncio.sleep(1.6)
        assert (await http.get("/user/info", headers=auth(token))).status_code == 401


def test_dev_callback_page_finishes_only_the_login_it_started(processes: Processes, redis_url: str) -> None:
    """With the playground off, /dev/callback is the redirect page: opened, it starts a login and
    finishes that one; a code and state it did not start (login CSRF) never reach /user/auth-callback."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.support.browser import offline_chromium

    api = processes.api(isolated_url(redis_url), PLAYGROUND="false")

    def heading(driver: object) -> str:
        return driver.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]

    with offline_chromium() as driver:
        wait = WebDriverWait(driver, 15, poll_frequency=0.05)
        driver.get(api.url + "/dev/callback")
        wait.until(lambda d: d.current_url.startswith(api.url + "/dev/login"))
        driver.find_element(By.NAME, "username").send_keys("Callback Carol")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: heading(d) == "Logged in")
        token = driver.find_element(By.ID, "out").text.split()[1]
        assert "code=" not in driver.current_url  # the one-time code is kept out of history
        info = httpx.get(api.url + "/user/info", headers=auth(token))
        assert info.status_code == 200 and info.json()["username"] == "Callback Carol"

        # Mallory's own code and state, sent to Carol's browser in a link: refused by the page.
        async def mallory_code() -> tuple[str, str]:
            async with httpx.AsyncClient(base_url=api.url) as http:
                return await dev_code(http, "Mallory")

        code, state = asyncio.run(mallory_code())
        driver.get(f"{api.url}/dev/callback?code={code}&state={state}")
        wait.until(lambda d: heading(d) == "Login failed")
        assert "not started from this page" in driver.find_element(By.ID, "out").text
        problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert problems == []  # no CSP violation, no failed call (no favicon without the playground)
    # The page never redeemed it: the code is still good for the one who holds it.
    redeemed = httpx.get(api.url + "/user/auth-callback", params={"code": code, "state": state})
    assert redeemed.status_code == 200, redeemed.text
