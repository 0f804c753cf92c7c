"""The HTTP libraries under the transport: the backend contract, and the httpx and aiohttp ones.

Import only the foundation and `_http`'s own decoding; the transport picks one.
"""
