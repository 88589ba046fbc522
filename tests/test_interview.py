"""The interview with the fake LLM: statuses, questions, answers, races, bad input."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from devstack.login import auth, dev_login
from tests.conftest import eventually

QUESTION_KEYS = {"id", "content", "choices"}


async def describe(client: httpx.AsyncClient, user: dict[str, str], text: str = "Python, asyncio, Redis") -> None:
    response = await client.post("/user/skill-description", headers=user, json={"description": text})
    assert response.status_code == 200 and response.json()["message"]


async def ready_questions(client: httpx.AsyncClient, user: dict[str, str]) -> list[dict]:
    async def check() -> list[dict] | None:
        response = await client.get("/user/questions", headers=user)
        if response.status_code == 202:
            assert response.json() == {"ready": False}
            return None
        assert response.status_code == 200, response.text
        return response.json()["questions"]

    return await eventually(check)


async def test_questions_before_any_description_is_409(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    response = await client.get("/user/questions", headers=user)
    assert response.status_code == 409 and "skill description" in response.json()["message"]


async def test_full_interview_to_success(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    await describe(client, user, "  Go, PostgreSQL and distributed systems  ")
    info = (await client.get("/user/info", headers=user)).json()
    assert info["skillDescription"] == "Go, PostgreSQL and distributed systems"
    assert info["interviewQuestionStatus"] in ("QUESTION_NOT_READY", "IN_PROGRESS")
    questions = await ready_questions(client, user)
    assert len(questions) == 5
    for q in questions:
        assert set(q) == QUESTION_KEYS  # no userAnswer yet, and never the correct answer
        assert isinstance(q["id"], int) and isinstance(q["content"], str) and 2 <= len(q["choices"]) <= 6
    assert (await client.get("/user/info", headers=user)).json()["interviewQuestionStatus"] == "IN_PROGRESS"

    first = questions[0]
    response = await client.post(f"/user/questions/{first['id']}/answer", headers=user, json={"answer": 0})
    assert response.status_code == 200
    answered = {q["id"]: q for q in await ready_questions(client, user)}
    assert answered[first["id"]]["userAnswer"] == 0 and "userAnswer" not in answered[questions[1]["id"]]
    assert "correctAnswer" not in answered[first["id"]]
    # answering again before completion replaces the answer
    await client.post(f"/user/questions/{first['id']}/answer", headers=user, json={"answer": 1})
    for q in questions[1:]:
        response = await client.post(f"/user/questions/{q['id']}/answer", headers=user, json={"answer": 1})
        assert response.status_code == 200
    done = await client.get("/user/questions", headers=user)
    assert done.status_code == 200 and done.json()["ready"] is True
    final = done.json()["questions"]
    assert all(q["userAnswer"] == 1 and isinstance(q["correctAnswer"], int) and q["explanation"] for q in final)
    info = (await client.get("/user/info", headers=user)).json()
    assert info["interviewQuestionStatus"] == "SUCCESS" and info["doneInterview"] is True
    assert info["interviewScore"] == sum(1 for q in final if q["correctAnswer"] == 1)


async def test_concurrent_answers_complete_exactly_once(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    await describe(client, user)
    questions = await ready_questions(client, user)
    attempts = [(q["id"], a) for q in questions for a in (0, 1)] * 5
    responses = await asyncio.gather(
        *(client.post(f"/user/questions/{qid}/answer", headers=user, json={"answer": a}) for qid, a in attempts)
    )
    messages = Counter(r.json()["message"] for r in responses if r.status_code == 200)
    assert messages["Answer saved. The interview is complete."] == 1
    assert all(r.status_code in (200, 409) for r in responses)
    final = (await client.get("/user/questions", headers=user)).json()["questions"]
    assert all(q["userAnswer"] in (0, 1) for q in final)
    assert (await client.get("/user/info", headers=user)).json()["interviewQuestionStatus"] == "SUCCESS"


async def test_new_description_replaces_interview_and_ids_are_never_reused(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    await describe(client, user, "Rust")
    first = await ready_questions(client, user)
    await client.post(f"/user/questions/{first[0]['id']}/answer", headers=user, json={"answer": 0})
    await describe(client, user, "Haskell")
    second = await ready_questions(client, user)
    assert not {q["id"] for q in first} & {q["id"] for q in second}
    assert all("userAnswer" not in q for q in second)
    assert any("Haskell" in q["content"] for q in second)
    gone = await client.post(f"/user/questions/{first[0]['id']}/answer", headers=user, json={"answer": 0})
    assert gone.status_code == 404


async def test_bad_answers(client: httpx.AsyncClient, user: dict[str, str]) -> None:
    other = auth(await dev_login(client))
    await describe(client, other)
    others_question = (await ready_questions(client, other))[0]["id"]

    early = await client.post("/user/questions/1/answer", headers=user, json={"answer": 0})
    assert early.status_code == 409  # no interview yet
    await describe(client, user)
    questions = await ready_questions(client, user)
    qid, n = questions[0]["id"], len(questions[0]["choices"])
    url = f"/user/questions/{qid}/answer"
    for body in (
        b'{"answer": 1.0}',
        b'{"answer": 1.5}',
        b'{"answer": "1"}',
        b'{"answer": true}',
        b"{}",
        b'{"answer": null}',
        b"not json",
        b'{"answer": [1]}',
    ):
        response = await client.post(url, headers={**user, "Content-Type": "application/json"}, content=body)
        assert response.status_code == 400, body
        assert "answer" in response.json()["message"] or "JSON" in response.json()["message"]
    for value in (n, -1, 10**30):
        response = await client.post(url, headers=user, json={"answer": value})
        assert response.status_code == 400 and "answer" in response.json()["message"], value
    assert (await client.post("/user/questions/999999999/answer", headers=user, json={"answer": 0})).status_code == 404
    stolen = await client.post(f"/user/questions/{others_question}/answer", headers=user, json={"answer": 0})
    assert stolen.status_code == 404
    for q in questions:
        await client.post(f"/user/questions/{q['id']}/answer", headers=user, json={"answer": 0})
    after = await client.post(url, headers=user, json={"answer": 1})
    assert after.status_code == 409
    assert (await client.get("/user/questions", headers=user)).json()["questions"][0]["userAnswer"] == 0


async def test_answer_while_questions_not_ready_is_409(
    client: httpx.AsyncClient, user: dict[str, str], redis_client
) -> None:
    await describe(client, user)
    user_id = (await client.get("/user/info", headers=user)).json()["userId"]
    await ready_questions(client, user)
    redis_client.hset(f"ai:{{u:{user_id}}}:user", "status", "QUESTION_NOT_READY")  # as while generating
    response = await client.post("/user/questions/1/answer", headers=user, json={"answer": 0})
    assert response.status_code == 409
    assert (await client.get("/user/questions", headers=user)).status_code == 202
