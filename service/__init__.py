"""service: the FastAPI app, auth and the served models (see docs/architecture.md)."""
