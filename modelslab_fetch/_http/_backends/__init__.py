"""The HTTP libraries under the transport: what a backend is, and the httpx and aiohttp ones.

Import only the foundation and `_http`'s own decoding; the transport picks one.
"""
