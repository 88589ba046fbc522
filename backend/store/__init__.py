"""The data layer shared by the API and the workers: the repositories (users, chats, replies,
the job queue, ...) gathered by `datastore.Store`, over the Redis client in `backend.redis`.

Code above the store (routes, the relay, ops, workers) imports from here and from the repository
modules, never from `backend.redis` (an import-linter contract holds it): what it may see
of the client is re-exported below.
"""

from backend.redis.clients import Memory
from backend.redis.errors import StoreUnavailable, retried
from backend.redis.pubsub import ClusterHub, Hub

RelayHub = Hub | ClusterHub
"""The pub/sub hub an API process relays replies through (one Redis, or a Cluster)."""

__all__ = ["Memory", "RelayHub", "StoreUnavailable", "retried"]
