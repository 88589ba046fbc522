"""What an LLM server's error answer says, read from its JSON body as the servers write it.

OpenAI and Azure: {"error": {"message", "type", "param", "code"}} (the openai client hands over
the inner object); vLLM: {"object": "error", "message", "type", "param", "code": 400} at the top;
llama.cpp: {"error": {"code": 400, "message", "type": "exceed_context_size_error", ...}}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# OpenAI and Azure say "context_length_exceeded" in `code`; vLLM only in the message ("This
# model's maximum context length is N tokens. However, you requested ..."); llama.cpp in `type`.
CONTEXT_WORDS = re.compile(
    r"maximum context length|context_length_exceeded|context length exceeded|exceeds the available context size",
    re.IGNORECASE,
)


def fields(body: object) -> tuple[str, str, str, str]:
    """(message, type, param, code) of an error body, each "" when absent or not a string."""
    if not isinstance(body, Mapping):
        return (body if isinstance(body, str) else "", "", "", "")
    inner = body.get("error")
    if isinstance(inner, Mapping):
        body = inner

    def text(name: str) -> str:
        value = body.get(name)
        return value if isinstance(value, str) else ""

    return text("message"), text("type"), text("param"), text("code")


def context_overflow(body: object) -> bool:
    """The prompt (with the reply's room) does not fit the model's context."""
    message, kind, _, code = fields(body)
    return (
        code == "context_length_exceeded" or kind == "exceed_context_size_error" or bool(CONTEXT_WORDS.search(message))
    )


def refused_parameter(body: object, name: str) -> bool:
    """The server refuses the request parameter `name` itself (not a value of it).

    OpenAI's current models: code "unsupported_parameter", param "max_tokens", "Unsupported
    parameter: 'max_tokens' is not supported with this model. ..."; Azure's older API versions:
    "Unrecognized request argument supplied: max_completion_tokens" (no param, no code)."""
    if context_overflow(body):  # vLLM's "'max_tokens' is too large: ..." is about the context
        return False
    message, _, param, code = fields(body)
    return (
        (param == name and code in ("unsupported_parameter", "unknown_parameter"))
        or f"Unsupported parameter: '{name}'" in message
        or f"Unknown parameter: '{name}'" in message
        or f"Unrecognized request argument supplied: {name}" in message
    )


def refuses_response_format(body: object) -> bool:
    """The server refuses the response_format asked for (json_schema, or JSON mode at all)."""
    if context_overflow(body):
        return False
    message, _, param, _ = fields(body)
    return param == "response_format" or "response_format" in message.lower()
