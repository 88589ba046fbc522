"""Login (OAuth 2 / OIDC via authlib, and a development provider) and session checks."""
