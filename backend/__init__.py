"""The Sanic API of the AI interview and assistant backend."""
