"""Endpoints: every fetch endpoint one row of one table, the calls each offers, routing.

Imports `_jobs`, `_http`, `_fleet` and the foundation; never `_clients`, `cli` or `testing`.
Adding an endpoint is one row (a class attribute) in `table.py`.
"""
