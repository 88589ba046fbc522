"""Structured answers from servers that have JSON schema output, JSON mode only, or neither.

The ways of asking, best first: `json_schema` (the server holds the answer to the schema),
`json_object` (valid JSON, the schema given in the prompt), `text` (the schema in the prompt,
the JSON read out of the text, fenced or not). Whichever way, the answer is validated by the
same pydantic model.
"""

from __future__ import annotations

import re
from typing import Literal, TypeVar

import orjson
from pydantic import BaseModel

OutputMode = Literal["json_schema", "json_object", "text"]
MODES: tuple[OutputMode, ...] = ("json_schema", "json_object", "text")
M = TypeVar("M", bound=BaseModel)

FENCED = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
# Reasoning models served by vLLM, Ollama or llama.cpp may put their thinking in the content.
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def next_mode(mode: OutputMode) -> OutputMode | None:
    """The next way of asking after the server refused `mode`, or None after the last."""
    index = MODES.index(mode) + 1
    return MODES[index] if index < len(MODES) else None


def schema_text(model: type[BaseModel]) -> str:
    return orjson.dumps(model.model_json_schema()).decode()


def candidates(text: str) -> list[str]:
    """Where the JSON may be in a model's text: fenced blocks, the whole text, or the span from
    the first brace (or bracket) to the last."""
    text = THINKING.sub("", text)
    found = [block.strip() for block in FENCED.findall(text)]
    found.append(text.strip())
    for opening, closing in ("{}", "[]"):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            found.append(text[start : end + 1])
    return found


def json_from_text(text: str) -> object:
    """The first JSON object or array in a model's text; ValueError when there is none."""
    for candidate in candidates(text):
        if candidate[:1] not in ("{", "["):
            continue
        try:
            return orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
    raise ValueError("the answer holds no JSON object")


def parse_answer(model: type[M], text: str, list_field: str | None = None) -> M:
    """`text` validated as `model` (pydantic.ValidationError, a ValueError, when it is not).

    A bare JSON array is taken as `list_field`'s value: small models often answer the list alone."""
    value = json_from_text(text)
    if isinstance(value, list) and list_field is not None:
        value = {list_field: value}
    return model.model_validate(value)
