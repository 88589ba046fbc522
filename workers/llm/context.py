"""What of a chat fits the model's context: a token estimate that needs no tokenizer file, and
the history trimmed to it.

The estimate is an upper bound, not a guess: byte-level BPE tokenizers (OpenAI's, Llama 3,
Qwen, Mistral's Tekken, DeepSeek) never make a token of less than one UTF-8 byte, and
SentencePiece ones with byte fallback (Llama 2, Gemma) add at most one token per message for
their leading space. So a message costs at most its UTF-8 bytes plus its chat template's tokens.
It overcounts plain English about four times, which only means less history is sent than would
fit; the server's own `context_length_exceeded` (halve the history and ask again) covers what a
template or a normalising tokenizer may still add.
"""

from __future__ import annotations

# Role markers and separators of the common chat templates (ChatML, Llama 3, Mistral) take 4-7
# tokens a message; the role's own name is counted as bytes besides.
MESSAGE_TOKENS = 8
# The reply's opening marker, and what a template may add by itself (a date line, a default
# system prompt).
TEMPLATE_TOKENS = 64

Message = dict[str, str]


def message_tokens(message: Message) -> int:
    """At most this many tokens for one message in any chat template."""
    return len(message["content"].encode("utf-8")) + len(message["role"]) + MESSAGE_TOKENS


def request_tokens(messages: list[Message]) -> int:
    """At most this many tokens of prompt for the whole request."""
    return TEMPLATE_TOKENS + sum(message_tokens(m) for m in messages)


def fit_history(system: Message, history: list[Message], context_tokens: int, reply_tokens: int) -> list[Message]:
    """[system, newest history that fits, the new prompt]: room is left for a reply of
    `reply_tokens`, the oldest messages go first, the system prompt and the new prompt (the
    history's last message) are always sent, and what is sent opens with a user message (some
    servers' templates refuse a conversation that opens with the assistant)."""
    if not history:
        return [system]
    *older, prompt = history
    budget = context_tokens - reply_tokens - request_tokens([system, prompt])
    kept: list[Message] = []
    for message in reversed(older):
        budget -= message_tokens(message)
        if budget < 0:
            break
        kept.append(message)
    kept.reverse()
    return [system, *opening_with_user(kept), prompt]


def halve_history(messages: list[Message]) -> list[Message] | None:
    """The same request with the older half of its history dropped, or None when only the
    system prompt and the new prompt are left (nothing more to drop)."""
    system, *older, prompt = messages
    if not older:
        return None
    kept = older[len(older) - len(older) // 2 :]  # the newer half; of one message, none
    return [system, *opening_with_user(kept), prompt]


def opening_with_user(history: list[Message]) -> list[Message]:
    for index, message in enumerate(history):
        if message["role"] == "user":
            return history[index:]
    return []
