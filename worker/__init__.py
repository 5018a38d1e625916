"""worker: see DESIGN.md (Architecture)."""
