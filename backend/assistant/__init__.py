"""Assistant chat: routes, and the relay of reply chunks from Redis to SSE clients."""
