"""Every Redis key and channel name, in one place.

Everything that belongs to one user (profile, sessions, interview, chats, reply logs and
channels) carries the hash tag ``{u:<id>}`` so a Lua script touching it stays in one Redis
Cluster slot. Global keys (counters, identities, login states, the job stream) stand alone.
"""

from __future__ import annotations

from urllib.parse import quote

PREFIX = "ai:"

USER_SEQ = PREFIX + "seq:user"
CHAT_SEQ = PREFIX + "seq:chat"
QUESTION_SEQ = PREFIX + "seq:question"
# The job streams, their attempt counts and the dead letters share a hash tag: the queue's
# scripts touch several of them, and a worker reads both streams in one call.
CHAT_JOBS = PREFIX + "{jobs}:chat"
QUESTION_JOBS = PREFIX + "{jobs}:questions"
JOB_STREAMS = {"chat": CHAT_JOBS, "questions": QUESTION_JOBS}  # in the order workers take them
JOB_GROUP = "workers"
JOB_ATTEMPTS = PREFIX + "{jobs}:attempts"
DEAD_JOBS = PREFIX + "{jobs}:dead"
WORKER_REPORTS = PREFIX + "{jobs}:workers"  # consumer -> "slots next_end_ms job_ms" (lua/report_capacity.lua)
WORKER_EXPIRIES = PREFIX + "{jobs}:workers:expiry"  # consumer -> when its report expires (ms)
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


def sessions(user_id: int | str) -> str:
    """The user's sessions (sorted set: token digest -> expiry ms), capped at SESSIONS_PER_USER_MAX."""
    return _user(user_id) + "sessions"


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


def deleted_chat_logs(user_id: int | str) -> str:
    """Reply logs of chats deleted mid-reply, still read by their readers until they expire
    (sorted set: "<chat id>:<generation>" -> expiry ms), so deleting the user finds them."""
    return _user(user_id) + "logs"


def reply_channel(user_id: int | str, chat_id: int | str, gen: int | str, db: int = 0) -> str:
    return _user(user_id) + f"chat:{chat_id}:reply:{gen}" + _db(db)


def open_streams(user_id: int | str) -> str:
    """The user's open SSE streams, on every pod: stream id -> expiry (ms, Redis time)."""
    return _user(user_id) + "streams"


def stream_ticket(user_id: int | str, digest: str) -> str:
    """A stream ticket (by the SHA-256 of the ticket): "<chat id>:<digest of the session it came from>"."""
    return _user(user_id) + "ticket:" + digest


def stream_tickets(user_id: int | str) -> str:
    """The user's live stream tickets (sorted set: digest -> expiry ms), so deleting the user finds them."""
    return _user(user_id) + "tickets"


def identity(provider: str, subject: str, issuer: str | None = None) -> str:
    """The user id bound to a provider identity. With an issuer (oidc), keyed by issuer and
    subject; the issuer is percent-encoded (no ':' left in it), so no issuer and subject pair
    can spell another's key. Without one, the key of identities made before issuers were kept."""
    if issuer is None:
        return f"{PREFIX}identity:{provider}:{subject}"
    return f"{PREFIX}identity:{provider}:{quote(issuer, safe='/')}:{subject}"


# Pending login states and their index share a hash tag: lua/save_state.lua counts them against
# LOGIN_STATES_MAX in one step (logins are few enough for one Cluster slot).
LOGIN_STATES = PREFIX + "{oauth}:pending"  # state -> expiry ms


def oauth_state(state: str) -> str:
    return f"{PREFIX}{{oauth}}:state:{state}"


def dev_code(code: str) -> str:
    return f"{PREFIX}oauth:devcode:{code}"


def rate_limit(name: str, who: str) -> str:
    return f"{PREFIX}rate:{name}:{who}"


USER_RATE_LIMITS = ("chat", "interview", "stream", "ticket", "export")  # buckets keyed by user id


def lease(name: str) -> str:
    return f"{PREFIX}lease:{name}"
