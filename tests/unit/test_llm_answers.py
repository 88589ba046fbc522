"""Reading LLM servers' answers: their refusals (exact bodies), and JSON out of a model's text."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from workers.llm.base import QuestionSet
from workers.llm.refusals import context_overflow, refused_parameter, refuses_response_format
from workers.llm.structured import MODES, json_from_text, next_mode, parse_answer

# As the openai client hands them over (`APIStatusError.body`: the inner "error" object when there is one).
GPT5_MAX_TOKENS = {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error",
    "param": "max_tokens",
    "code": "unsupported_parameter",
}
AZURE_OLD_VERSION = {
    "message": "Unrecognized request argument supplied: max_completion_tokens",
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}
OPENAI_OVERFLOW = {
    "message": "This model's maximum context length is 8192 tokens. However, you requested 8500 tokens "
    "(500 in the messages, 8000 in the completion). Please reduce the length of the messages or completion.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
VLLM_OVERFLOW = {
    "object": "error",
    "message": "This model's maximum context length is 6048 tokens. However, you requested 6616 tokens "
    "(568 in the messages, 6048 in the completion). Please reduce the length of the messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
VLLM_MAX_TOKENS_TOO_LARGE = {
    "object": "error",
    "message": "'max_tokens' is too large: 4096. This model's maximum context length is 2048 tokens and your "
    "request has 100 input tokens (4096 > 2048 - 100).",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
LLAMACPP_OVERFLOW = {
    "code": 400,
    "message": "the request exceeds the available context size, try increasing it",
    "type": "exceed_context_size_error",
    "n_prompt_tokens": 14429,
    "n_ctx": 8192,
}
NO_JSON_SCHEMA = {
    "message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
    "type": "invalid_request_error",
    "param": None,
    "code": None,
}
NO_RESPONSE_FORMAT = {"message": "Unrecognized request argument supplied: response_format", "type": "x"}
VLLM_BAD_TEMPERATURE = {"object": "error", "message": "temperature must be non-negative", "code": 400}


def test_cap_refusals_name_the_refused_parameter_only() -> None:
    assert refused_parameter(GPT5_MAX_TOKENS, "max_tokens")
    assert not refused_parameter(GPT5_MAX_TOKENS, "max_completion_tokens")  # named in it, but as the cure
    assert refused_parameter(AZURE_OLD_VERSION, "max_completion_tokens")
    assert not refused_parameter(AZURE_OLD_VERSION, "max_tokens")
    # vLLM names max_tokens, but the request is over the context: switching would not help.
    assert not refused_parameter(VLLM_MAX_TOKENS_TOO_LARGE, "max_tokens")
    assert not refused_parameter(VLLM_BAD_TEMPERATURE, "max_tokens")
    assert refused_parameter({"error": GPT5_MAX_TOKENS}, "max_tokens")  # the whole body works too


@pytest.mark.parametrize("body", [OPENAI_OVERFLOW, VLLM_OVERFLOW, VLLM_MAX_TOKENS_TOO_LARGE, LLAMACPP_OVERFLOW])
def test_context_overflow_as_each_server_says_it(body: dict) -> None:
    assert context_overflow(body)
    assert not refuses_response_format(body)


@pytest.mark.parametrize("body", [GPT5_MAX_TOKENS, AZURE_OLD_VERSION, NO_JSON_SCHEMA, VLLM_BAD_TEMPERATURE, None, "x"])
def test_other_errors_are_not_overflows(body: object) -> None:
    assert not context_overflow(body)


def test_response_format_refusals() -> None:
    assert refuses_response_format(NO_JSON_SCHEMA)
    assert refuses_response_format(NO_RESPONSE_FORMAT)
    assert refuses_response_format({"message": "bad", "param": "response_format"})
    assert not refuses_response_format(GPT5_MAX_TOKENS)
    assert not refuses_response_format(VLLM_BAD_TEMPERATURE)


def test_fallback_order() -> None:
    assert MODES == ("json_schema", "json_object", "text")
    assert next_mode("json_schema") == "json_object"
    assert next_mode("json_object") == "text"
    assert next_mode("text") is None


QUESTIONS = {
    "questions": [
        {"content": "Which?", "choices": ["a", "b"], "correct_index": 1, "explanation": "Because."},
    ]
}
RAW = orjson.dumps(QUESTIONS).decode()


@pytest.mark.parametrize(
    "text",
    [
        RAW,
        f"```json\n{RAW}\n```",
        f"Here they are:\n\n```json\n{RAW}\n```\n\nGood luck!",
        f"```\n{RAW}\n```",
        f"Sure! {RAW} I hope these help.",
        f"<think>The user wants {{questions}}; a set like {{x}}.</think>\n{RAW}",
        f"```text\nnot this\n```\n```json\n{RAW}\n```",
        orjson.dumps(QUESTIONS["questions"]).decode(),  # the list alone
    ],
)
def test_json_read_from_text_fenced_or_not(text: str) -> None:
    parsed = parse_answer(QuestionSet, text, list_field="questions")
    assert parsed.questions[0].content == "Which?" and parsed.questions[0].correct_index == 1


@pytest.mark.parametrize("text", ["", "no JSON here", "```json\n{broken\n```", "{'single': 'quotes'}"])
def test_no_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="no JSON"):
        json_from_text(text)


def test_json_of_the_wrong_shape_fails_validation() -> None:
    with pytest.raises(ValidationError):
        parse_answer(QuestionSet, '{"questions": [{"content": "only this"}]}', list_field="questions")
    with pytest.raises(ValidationError):  # a list is taken as the questions only when asked to
        parse_answer(QuestionSet, orjson.dumps(QUESTIONS["questions"]).decode())
