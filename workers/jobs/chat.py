"""The `chat` job: stream one reply from the LLM into the reply's log and channel.

The writer claims the reply generation with a token of its own; every chunk is appended by
lua/append_chunk.lua fenced by (generation, token), so a stale or duplicate worker cannot
write. A heartbeat renews the reply's lease so readers can tell a dead writer from a slow one.
A user's stop (any pod) reaches the writer over the control channel and cancels the LLM call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from backend.store import StoreUnavailable, retried
from backend.store.datastore import Store
from backend.store.interview import IN_PROGRESS, QUESTION_NOT_READY, SUCCESS
from backend.store.queue import Job
from backend.store.replies import Claim
from workers import metrics
from workers.llm import LLM, ContextOverflow, LLMError, ReplyEnd
from workers.llm.base import load_prompt
from workers.llm.context import fit_history, halve_history

log = logging.getLogger("workers.chat")

LLM_FAILED = "The assistant could not finish this reply. Please try again."


def published(waits: list[float]) -> None:
    """Chunks confirmed by Redis, each with its wait from push to confirmation."""
    metrics.LLM_CHUNKS.inc(len(waits))
    for wait in waits:
        metrics.PUBLISH_LATENCY.observe(wait)


def failure_message(error: BaseException | None) -> str:
    """What the user reads in the reply's `event: error`: the LLM's own advice when it has some."""
    return getattr(error, "user_message", None) or LLM_FAILED


def interview_summary(user: dict[str, str]) -> str:
    status = user.get("status", "")
    if status == SUCCESS:
        return f"completed, {user.get('score', 0)} of {user.get('total', 0)} questions answered correctly."
    if status == IN_PROGRESS:
        return "questions generated, not all answered yet."
    if status == QUESTION_NOT_READY:
        return "questions are being generated."
    return "not taken yet."


class ChatJob:
    def __init__(self, store: Store, llm: LLM, context_tokens: int, reply_tokens: int, lease_seconds: float) -> None:
        self.store = store
        self.replies = store.replies
        self.llm = llm
        self.context_tokens = context_tokens
        self.reply_tokens = reply_tokens
        self.lease_seconds = lease_seconds
        self.renew_every = lease_seconds * 0.2
        self.system_template = load_prompt("chat_system.txt")
        self.writing: dict[tuple[int, int, int], asyncio.Task[None]] = {}
        self.tokens: dict[asyncio.Task[None], str] = {}
        self.stopped: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    def stop(self, user_id: int, chat_id: int, gen: int) -> None:
        """A user stopped this reply (from any pod): cancel the LLM call now."""
        task = self.writing.get((user_id, chat_id, gen))
        if task is not None and not task.done():
            self.stopped.add(task)
            task.cancel()

    async def run(self, job: Job) -> None:
        user_id, chat_id, gen = int(job.fields["userId"]), int(job.fields["chatId"]), int(job.fields["gen"])
        token = uuid.uuid4().hex  # unique per attempt: a stale attempt can never write again
        claimed = await self.replies.claim(user_id, chat_id, gen, token)
        if claimed == Claim.NOTHING_TO_DO:
            return  # stopped, deleted or superseded before we got to it
        if claimed == Claim.WRITER_DIED:  # the reply cannot be resumed mid-way
            await self.replies.finish(user_id, chat_id, gen, "reap")
            return
        writer = asyncio.create_task(self._write(job, user_id, chat_id, gen, token))
        self.writing[(user_id, chat_id, gen)] = writer
        self.tokens[writer] = token
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_leases())
        try:
            await writer
        except asyncio.CancelledError:
            if writer not in self.stopped:
                await self._abandon(writer, user_id, chat_id, gen, token)
                raise
            log.info("reply stopped by the user", extra={"job": job.id, "request_id": job.request_id})
        finally:
            self.tokens.pop(writer, None)
            self.stopped.discard(writer)
            self.writing.pop((user_id, chat_id, gen), None)

    async def _abandon(self, writer: asyncio.Task[None], user_id: int, chat_id: int, gen: int, token: str) -> None:
        """This worker is shutting down mid-reply: end it cleanly rather than leave readers waiting."""
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
        with contextlib.suppress(StoreUnavailable):
            await self.replies.finish(
                user_id,
                chat_id,
                gen,
                "error",
                token=token,
                message="The assistant was restarted. Please send your message again.",
            )

    async def _write(self, job: Job, user_id: int, chat_id: int, gen: int, token: str) -> None:
        messages = await self._context(user_id, chat_id)
        # Chunks go out as they come; a Redis outage within the lease is a pause, not a failure.
        chunks = self.replies.writer(user_id, chat_id, gen, token, retry_seconds=self.lease_seconds, on_batch=published)
        started = time.perf_counter()
        sent = 0
        end = ReplyEnd()
        try:
            async for piece in self._reply(job, messages):
                if isinstance(piece, ReplyEnd):
                    end = piece
                    continue
                if sent == 0:
                    metrics.LLM_FIRST_TOKEN.observe(time.perf_counter() - started)
                if chunks.fenced:
                    return  # stopped, deleted or taken over
                if chunks.error is not None:
                    raise chunks.error
                chunks.push(piece)
                sent += 1
            if not await chunks.drain():
                return
        except LLMError as error:
            if sent == 0:
                raise  # nothing out yet: the runner retries with backoff (or gives up)
            log.warning("LLM failed mid-reply", extra={"job": job.id, "error": str(error)})
            if await chunks.drain():
                await self.replies.finish(user_id, chat_id, gen, "error", token=token, message=failure_message(error))
            return
        finally:
            chunks.close()
        metrics.LLM_CALL.labels("chat").observe(time.perf_counter() - started)
        usage = None
        if end.prompt_tokens is not None and end.completion_tokens is not None:
            metrics.LLM_TOKENS.labels("prompt").inc(end.prompt_tokens)
            metrics.LLM_TOKENS.labels("completion").inc(end.completion_tokens)
            usage = {"promptTokens": end.prompt_tokens, "completionTokens": end.completion_tokens}
        # Retried within the lease like the chunks (a second finish finds it done).
        await retried(
            lambda: self.replies.finish(
                user_id, chat_id, gen, "done", token=token, finish_reason=end.finish_reason, usage=usage
            ),
            self.lease_seconds,
        )

    async def _context(self, user_id: int, chat_id: int) -> list[dict[str, str]]:
        user, history = await self.store.chats.context(user_id, chat_id)
        system = self.system_template.format(
            skill_description=user.get("skillDescription") or "(not given)",
            interview_summary=interview_summary(user),
        )
        history = [{"role": m["role"], "content": m["content"]} for m in history]
        return fit_history({"role": "system", "content": system}, history, self.context_tokens, self.reply_tokens)

    async def _reply(self, job: Job, messages: list[dict[str, str]]) -> AsyncIterator[str | ReplyEnd]:
        """The LLM's reply; a server that finds the request over its context (before any piece
        of the reply) is asked again with the older half of the history dropped, until none is left."""
        while True:
            try:
                async for piece in self.llm.stream_reply(messages):
                    yield piece
                return
            except ContextOverflow:
                shorter = halve_history(messages)
                if shorter is None:
                    raise  # the prompt alone is over the context: its user_message says so
                log.info(
                    "LLM context exceeded: asking again with half the history",
                    extra={"job": job.id, "messages": len(shorter), "request_id": job.request_id},
                )
                messages = shorter

    async def _renew_leases(self) -> None:
        """One heartbeat for every reply this process writes: their leases renewed in one batch."""
        while self.writing:
            await asyncio.sleep(self.renew_every)
            leases = [(*ids, self.tokens[task]) for ids, task in list(self.writing.items()) if task in self.tokens]
            with contextlib.suppress(StoreUnavailable):
                await self.replies.renew_many(leases)

    async def give_up(self, job: Job, error: BaseException | None) -> None:
        user_id, chat_id, gen = int(job.fields["userId"]), int(job.fields["chatId"]), int(job.fields["gen"])
        await self.replies.finish(user_id, chat_id, gen, "fail", message=failure_message(error))
