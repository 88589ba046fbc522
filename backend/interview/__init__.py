"""Interview routes: skill description, questions, answers."""
