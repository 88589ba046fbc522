"""Settings and prompt templates shared by the API and the workers."""
