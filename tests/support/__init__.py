"""Real processes the tests start on loopback: Redis, the API, workers, an OIDC provider, an LLM."""
