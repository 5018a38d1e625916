"""service: see DESIGN.md (Architecture)."""
