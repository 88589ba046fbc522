"""The project's own Redis client: what redis-py does not do fast enough or at all here.

- `wire`: RESP packing (hiredis parsing), the multiplexed command connection that carries every
  Lua script call and pipelined heartbeat of a process on one socket, and the pub/sub protocol.
- `cluster`: on a Redis Cluster, the slot map and one multiplexed connection per master, each
  call routed by its key's slot (MOVED, ASK, TRYAGAIN, failovers).
- `pubsub`: the hub, one subscribed connection per process for all of its open streams.
- `scripts`: the scripts of `lua/`, called by name (hashed once, loaded on NOSCRIPT).
- `clients`: redis-py pools for plain commands, every call bounded by REDIS_TIMEOUT_SECONDS.
- `errors`: every way Redis can fail a call, raised as `StoreUnavailable`.

Why hand-written: redis-py's pooled client spends a connection checkout and a Python-level
parse per call, and its pub/sub wakes a task per message. The workers write every chunk and the
API checks a session on every request: done through pooled connections, the checkouts alone were
a fifth of the API's time during a burst of 1,000 prompts, and the relay's task switch per chunk
bounded delivered events per second (README, "Streaming a reply" and "Performance"). redis-py
stays for everything else (plain commands, the cluster map, URL parsing).

Only the repositories of `backend.store` import this package (an import-linter contract).
"""
