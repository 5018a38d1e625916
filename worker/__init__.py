"""worker: Celery tasks and the upgrade pipeline (see docs/architecture.md)."""
