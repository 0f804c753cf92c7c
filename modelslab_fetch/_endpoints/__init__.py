"""Layer 3: one small module per ModelsLab fetch endpoint, each a `FetchEndpoint` value.

Adding an endpoint (v6 realtime, v6 video, ...) is a module like `images.py` plus one
attribute on each client.
"""
