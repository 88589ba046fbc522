"""Every Redis key and channel name, in one place.

Everything that belongs to one user (profile, sessions, interview, chats, reply logs and
channels) carries the hash tag ``{u:<id>}`` so a Lua script touching it stays in one Redis
Cluster slot. Global keys (counters, identities, login states, the job stream) stand alone.
"""

from __future__ import annotations

PREFIX = "ai:"

USER_SEQ = PREFIX + "seq:user"
CHAT_SEQ = PREFIX + "seq:chat"
QUESTION_SEQ = PREFIX + "seq:question"
# The job stream and its attempt counts share a hash tag: requeue_job.lua touches both.
JOBS = PREFIX + "{jobs}"
JOB_GROUP = "workers"
JOB_ATTEMPTS = PREFIX + "{jobs}:attempts"
JOB_STATS = PREFIX + "stats:jobs"  # "<type>:<outcome>" -> count, for /metrics


# Pub/sub channels are shared by every database of a Redis server; a deployment on a database
# other than 0 gets its own channel names (the suffix keeps the hash tag intact).
def _db(db: int) -> str:
    return f"@db{db}" if db else ""


def control_channel(db: int = 0) -> str:
    """Commands to every worker (a user's stop)."""
    return PREFIX + "control" + _db(db)


def _user(user_id: int | str) -> str:
    return f"{PREFIX}{{u:{user_id}}}:"


def user(user_id: int | str) -> str:
    return _user(user_id) + "user"


def session(user_id: int | str, digest: str) -> str:
    return _user(user_id) + "session:" + digest


def questions(user_id: int | str) -> str:
    return _user(user_id) + "questions"


def answers(user_id: int | str) -> str:
    return _user(user_id) + "answers"


def chats(user_id: int | str) -> str:
    return _user(user_id) + "chats"


def chat(user_id: int | str, chat_id: int | str) -> str:
    return _user(user_id) + f"chat:{chat_id}"


def messages(user_id: int | str, chat_id: int | str) -> str:
    return _user(user_id) + f"chat:{chat_id}:messages"


def partial(user_id: int | str, chat_id: int | str) -> str:
    return _user(user_id) + f"chat:{chat_id}:partial"


def reply_lease(user_id: int | str, chat_id: int | str) -> str:
    return _user(user_id) + f"chat:{chat_id}:lease"


def reply_log(user_id: int | str, chat_id: int | str, gen: int | str) -> str:
    return _user(user_id) + f"chat:{chat_id}:log:{gen}"


def reply_channel(user_id: int | str, chat_id: int | str, gen: int | str, db: int = 0) -> str:
    return _user(user_id) + f"chat:{chat_id}:reply:{gen}" + _db(db)


def identity(provider: str, subject: str) -> str:
    return f"{PREFIX}identity:{provider}:{subject}"


def oauth_state(state: str) -> str:
    return f"{PREFIX}oauth:state:{state}"


def dev_code(code: str) -> str:
    return f"{PREFIX}oauth:devcode:{code}"


def rate_limit(name: str, who: str) -> str:
    return f"{PREFIX}rate:{name}:{who}"
