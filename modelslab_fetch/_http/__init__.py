"""HTTP: one JSON POST to ModelsLab, its answer mapped onto our errors, retried, rate-limited.

Imports only the foundation (the package's root modules); never `_jobs`, `_endpoints`,
`_clients`, `cli` or `testing`. Its HTTP libraries are in `_backends/`.
"""
