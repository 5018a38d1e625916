"""core: the plumbing the service and the worker share (see docs/architecture.md).

`core.settings` (the one settings object), `core.db` (engines, sessions, migrations),
`core.models` (the ORM tables), `core.storage` (the artifact store: content-addressed blobs,
named references, scratch folders; `core.s3_store` keeps them in an S3 bucket), `core.lease`
(a worker's hold on a running job, and when that hold counts as stale), `core.jobs` (the
janitor's recovery of stale jobs), `core.audit` (the audit log), `core.backup` (backing up
and restoring the database and the store together), `core.integrity` (do they agree?),
`core.releases` and `core.tasks` (the Celery app, task names and the worker command line).
Importing `core` imports none of them and does nothing else.
"""
