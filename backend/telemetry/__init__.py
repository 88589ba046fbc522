"""What the API and the workers both report: traces (tracing.py) and reply outcomes (replies.py).

Imported by backend.store and by workers (the import contracts allow it), so it imports nothing
else of the project.
"""
