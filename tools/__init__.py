"""Maintainers' tools, run from the repository's root (`python -m tools.<name>`), not installed."""
