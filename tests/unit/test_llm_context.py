"""The history sent to the LLM: the token estimate, trimming to the context, halving."""

from __future__ import annotations

from workers.llm.context import (
    MESSAGE_TOKENS,
    TEMPLATE_TOKENS,
    fit_history,
    halve_history,
    message_tokens,
    request_tokens,
)

SYSTEM = {"role": "system", "content": "You are helpful."}


def turns(count: int, size: int) -> list[dict[str, str]]:
    """count messages of `size` ASCII bytes, user and assistant in turn, the last one a user's."""
    return [
        {"role": "user" if (count - 1 - i) % 2 == 0 else "assistant", "content": f"{i:04d}" + "x" * (size - 4)}
        for i in range(count)
    ]


def test_estimate_is_bytes_plus_template_overhead() -> None:
    assert message_tokens({"role": "user", "content": "hello"}) == 5 + 4 + MESSAGE_TOKENS
    # Three bytes of UTF-8 for each of these characters: no tokenizer makes less than a byte a token.
    assert message_tokens({"role": "user", "content": "日本語"}) == 9 + 4 + MESSAGE_TOKENS
    assert message_tokens({"role": "user", "content": "😀"}) == 4 + 4 + MESSAGE_TOKENS
    pair = [SYSTEM, {"role": "user", "content": "hello"}]
    assert request_tokens(pair) == TEMPLATE_TOKENS + sum(map(message_tokens, pair))


def test_everything_is_sent_when_it_fits() -> None:
    history = turns(9, 100)
    assert fit_history(SYSTEM, history, 128_000, 1024) == [SYSTEM, *history]


def test_oldest_dropped_first_with_room_for_the_reply() -> None:
    history = turns(41, 500)
    context, reply = 8000, 1024
    sent = fit_history(SYSTEM, history, context, reply)
    assert sent[0] == SYSTEM and sent[-1] == history[-1]
    assert sent[1:] == history[-(len(sent) - 1) :]  # a contiguous run of the newest messages
    assert request_tokens(sent) + reply <= context
    one_more = [SYSTEM, history[-len(sent)], *sent[1:]]  # the next older message would not fit
    assert request_tokens(one_more) + reply > context
    assert sent[1]["role"] == "user"


def test_a_bigger_reply_cap_leaves_less_history() -> None:
    history = turns(41, 500)
    assert len(fit_history(SYSTEM, history, 8000, 4000)) < len(fit_history(SYSTEM, history, 8000, 100))


def test_system_and_prompt_always_sent_even_over_the_context() -> None:
    history = turns(5, 100)
    huge = {"role": "user", "content": "y" * 50_000}
    assert fit_history(SYSTEM, [*history, huge], 4000, 1000) == [SYSTEM, huge]
    assert fit_history(SYSTEM, [], 4000, 1000) == [SYSTEM]


def test_trimmed_history_opens_with_a_user_message() -> None:
    history = turns(6, 100)  # the last is a user's, so the first is an assistant's
    assert [m["role"] for m in history] == ["assistant", "user"] * 3
    sent = fit_history(SYSTEM, history, 128_000, 1024)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_halving_drops_the_older_half_until_none_is_left() -> None:
    history = turns(9, 10)
    messages = [SYSTEM, *history]
    sizes = []
    while (messages := halve_history(messages)) is not None:  # type: ignore[assignment]
        assert messages[0] == SYSTEM and messages[-1] == history[-1]
        assert messages[1:] == history[-(len(messages) - 1) :]
        sizes.append(len(messages) - 2)
    # 8 older messages -> the newer 4 -> 2 -> 1 (an assistant's: dropped, so the history opens with a user) -> 0.
    assert sizes == [4, 2, 0]
