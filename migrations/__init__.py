"""The Alembic migrations, shipped inside the installed distribution.

A package only so that `core.db` finds `env.py`, `script.py.mako` and `versions/` through
`importlib.resources` wherever the project is installed; importing it does nothing.
"""
