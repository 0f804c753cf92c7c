"""Jobs: one polled until it finishes (or a webhook says so), many in a batch, outputs saved.

Imports `_http`, `_fleet` and the foundation; never `_endpoints`, `_clients`, `cli` or `testing`.
"""
