"""The clients: `AsyncModelsLab`, and the blocking `ModelsLab` on its loop thread.

Imports every layer below (`_endpoints`, `_jobs`, `_http`, `_fleet`, the foundation); only `cli`
and `testing` (through the public package) sit above.
"""
