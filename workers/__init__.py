"""LLM worker processes: take jobs from the Redis Stream, call the LLM, publish results."""
