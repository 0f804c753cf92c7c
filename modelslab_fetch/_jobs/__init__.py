"""Jobs: one job polled until it finishes, many at once in a batch, their outputs saved.

Imports `_http`, `_fleet` and the foundation; never `_endpoints`, `_clients`, `cli` or `testing`.
"""
