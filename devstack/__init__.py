"""Real processes for development, tests and benchmarks: redis-server (single, cluster), the API
and worker subprocesses, free ports, and the dev-provider login a browser would do."""
