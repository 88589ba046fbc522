"""Redis data layer shared by the API and the workers."""
