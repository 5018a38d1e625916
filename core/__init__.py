"""core: see DESIGN.md (Architecture)."""
