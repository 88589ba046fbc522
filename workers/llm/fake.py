"""An offline, deterministic LLM for development and tests: plausible questions built from the
description, and replies streamed word by word at a set pace."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator

from config.settings import Settings
from workers.llm.base import GeneratedQuestion, ReplyEnd

ANGLES = [
    (
        "What is the main benefit of {t}?",
        "It solves a concrete problem well when used as intended",
        [
            "It removes the need for testing",
            "It makes every program faster automatically",
            "It is required by every modern operating system",
        ],
    ),
    (
        "When would you avoid {t}?",
        "When its costs outweigh what the problem needs",
        ["Never: it is always the right choice", "Only on Tuesdays", "Whenever code is version controlled"],
    ),
    (
        "How would you verify that {t} works correctly in production?",
        "With tests, metrics and logs that check its real behaviour",
        [
            "By reading the documentation once",
            "By assuming it works because it compiled",
            "By disabling error reporting",
        ],
    ),
    (
        "Which practice helps most when learning {t} in depth?",
        "Building something real with it and studying how it fails",
        ["Memorising its version history", "Avoiding its error messages", "Only watching others use it"],
    ),
]
WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.\-]{2,}")
STOPWORDS = {
    "and",
    "the",
    "with",
    "for",
    "have",
    "years",
    "year",
    "experience",
    "know",
    "using",
    "work",
    "worked",
    "some",
    "also",
    "from",
    "that",
    "this",
    "like",
    "good",
    "very",
}


def topics(description: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in WORD.findall(description):
        word = word.strip(".-")
        if word.lower() not in STOPWORDS and len(word) > 2:
            seen.setdefault(word, None)
    return list(seen) or ["software engineering"]


class FakeLLM:
    def __init__(self, settings: Settings) -> None:
        self.delay = settings.FAKE_LLM_TOKEN_DELAY_MS / 1000
        self.reply_words = settings.FAKE_LLM_REPLY_WORDS
        self.max_tokens = settings.LLM_MAX_TOKENS  # one word is one token here

    async def generate_questions(self, description: str, count: int) -> list[GeneratedQuestion]:
        found = topics(description)
        questions = []
        for index in range(count):
            topic = found[index % len(found)]
            template, right, wrong = ANGLES[(index + index // len(found)) % len(ANGLES)]
            seed = int(hashlib.sha256(f"{description}|{index}".encode()).hexdigest(), 16)
            correct = seed % (len(wrong) + 1)
            choices = list(wrong)
            choices.insert(correct, right)
            questions.append(
                GeneratedQuestion(
                    content=template.format(t=topic),
                    choices=choices,
                    correct_index=correct,
                    explanation=f"{right} - that is what matters for {topic} in practice.",
                )
            )
        return questions

    async def stream_reply(self, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        turn = sum(1 for m in messages if m["role"] == "user")
        intro = f'(turn {turn}) You asked: "{" ".join(prompt.split()[:12])}". '
        filler = "Here is a considered answer that walks through the idea step by step".split()
        whole = intro.split() + [filler[i % len(filler)] for i in range(self.reply_words)]
        words = whole[: self.max_tokens]
        # Replies started together do not tick together: a real model's first token takes its time.
        next_at = time.monotonic() + random.uniform(0, self.delay)
        for index, word in enumerate(words):
            if self.delay:  # a steady pace: the time spent publishing is not added to it
                next_at += self.delay
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            yield word if index == 0 else " " + word
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        yield ReplyEnd("length" if len(words) < len(whole) else "stop", prompt_tokens, len(words))

    async def aclose(self) -> None:
        return None
