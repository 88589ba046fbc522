"""python -m workers.admin: look at the job queue and its dead letters, and put them back.

    python -m workers.admin queue          depth, lag, pending jobs and consumers of each stream
    python -m workers.admin dead           one JSON line per dead job
    python -m workers.admin retry <id>     put one dead job back in its queue (fresh attempts)
    python -m workers.admin retry --all    put every dead job back
    python -m workers.admin purge          drop every dead job

Reads REDIS_URL (and the rest of the configuration) like the worker does. Exit status: 0 done,
1 nothing matched (an unknown id), 2 bad usage or configuration, 3 Redis unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from backend.store import StoreUnavailable
from backend.store.datastore import Store
from config.settings import get_settings


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m workers.admin", description="The job queue and its dead letters.")
    commands = cli.add_subparsers(dest="command", required=True)
    commands.add_parser("queue", help="depth, lag, pending jobs and consumers of each job stream")
    commands.add_parser("dead", help="one JSON line per dead job")
    retry = commands.add_parser("retry", help="put dead jobs back in their queue")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="a dead job's id (from `dead`)")
    which.add_argument("--all", action="store_true", help="every dead job")
    commands.add_parser("purge", help="drop every dead job")
    return cli


async def show_queue(store: Store) -> int:
    for state in await store.queue.streams():
        print(
            f"{state.type}: {state.length} in stream, {state.waiting} waiting (oldest "
            f"{state.oldest_wait_seconds:.1f} s), {state.pending} pending"
        )
        for consumer in state.consumers:
            idle = consumer["idleMs"] / 1000
            print(f"  consumer {consumer['name']}: {consumer['pending']} pending, idle {idle:.1f} s")
    print(f"dead: {await store.queue.dead_count()}")
    return 0


def dead_line(dead_id: str, letter: dict[str, str]) -> bytes:
    user = letter.get("userId", "")
    return orjson.dumps(
        {
            "id": dead_id,
            "type": letter.get("type", ""),
            "userId": int(user) if user.isdigit() else None,
            "error": letter.get("error", ""),
            "attempts": int(letter.get("attempts") or 0),
            "failedAt": int(letter.get("failedAt") or 0),
            "job": letter.get("job", ""),
        }
    )


async def show_dead(store: Store) -> int:
    for dead_id, letter in await store.queue.dead_letters():
        sys.stdout.buffer.write(dead_line(dead_id, letter) + b"\n")
    return 0


async def retry(store: Store, dead_id: str | None) -> int:
    letters = await store.queue.dead_letters()
    chosen = letters if dead_id is None else [(i, letter) for i, letter in letters if i == dead_id]
    if not chosen:
        print(f"no dead job {dead_id}" if dead_id else "no dead jobs", file=sys.stderr)
        return 1 if dead_id else 0
    for letter_id, letter in chosen:
        if letter.get("type") == "questions":
            # The user's interview went back to NOT_STARTED; it waits for questions again if current.
            await store.interview.reopen(int(letter["userId"]), int(letter["interviewId"]))
        revived = await store.queue.revive(letter_id)
        if revived is None:
            print(f"{letter_id}: gone meanwhile", file=sys.stderr)
            continue
        note = ""
        if letter.get("type") == "chat":
            note = " (its reply already ended with an error: the worker will skip it)"
        print(f"{letter_id} -> {revived[0]} {letter.get('type', '')}{note}")
    return 0


async def run(args: argparse.Namespace) -> int:
    store = Store(get_settings())
    try:
        if args.command == "queue":
            return await show_queue(store)
        if args.command == "dead":
            return await show_dead(store)
        if args.command == "retry":
            return await retry(store, None if args.all else args.id)
        print(f"purged {await store.queue.purge()} dead jobs")
        return 0
    except StoreUnavailable as error:
        print(f"Redis unavailable: {error}", file=sys.stderr)
        return 3
    finally:
        await store.close()


def main() -> None:
    sys.exit(asyncio.run(run(parser().parse_args())))


if __name__ == "__main__":
    main()
