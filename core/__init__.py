"""core: the plumbing the service and the worker share (see docs/architecture.md).

`core.settings` (the one settings object), `core.db` (engines, sessions, migrations),
`core.models` (the ORM tables) and `core.storage` (the content-addressed artifact store).
Importing `core` imports none of them and does nothing else.
"""
