"""The fleet: clients in many processes sharing deliveries, pauses, a rate budget and polls.

With `redis_url=`, every client using the same Redis (and key prefix) coordinates
through it; without, nothing here runs. Imports only the foundation (the package's root
modules) and the `redis` and `limits` libraries; never `_http`, `_jobs`, `_endpoints`,
`_clients`, `cli` or `testing`, which use it through `FleetLink`'s small interface.
"""
