"""The one TLS context a client uses, for API calls on every backend and for downloads.

Built when the client is created, so `SSL_CERT_FILE`/`SSL_CERT_DIR` set before are honoured.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

import certifi

from ._errors import ConfigurationError

__all__ = ["CertTypes", "VerifyTypes", "make_ssl_context"]

VerifyTypes = bool | str | os.PathLike[str] | ssl.SSLContext
"""`verify=`: True (certifi, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), False (no check: only
for a test server you control), a CA bundle file or directory, or your own context."""

CertTypes = str | os.PathLike[str] | tuple[str, str] | tuple[str, str, str]
"""`cert=`: a client certificate file (with its key), or `(certfile, keyfile)`, or
`(certfile, keyfile, password)`."""


def make_ssl_context(
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    *,
    trust_env: bool = True,
) -> ssl.SSLContext:
    """The `ssl.SSLContext` for `verify` and `cert`; raises `ConfigurationError` if unusable."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        context = _default_context(os.environ if trust_env else {}, shared=cert is None)
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str | os.PathLike):
        context = _context_from_path(Path(verify), "verify", shared=cert is None)
    else:
        raise ConfigurationError(
            "verify must be True, False, a CA bundle path or an ssl.SSLContext; "
            f"got {type(verify).__name__}"
        )
    if cert is not None:
        _load_client_certificate(context, cert)
    return context


def _default_context(env: Mapping[str, str], *, shared: bool) -> ssl.SSLContext:
    # `shared`: no client certificate will be loaded into it (see _SHARED_CONTEXTS).
    if env.get("SSL_CERT_FILE"):
        return _context_from_path(Path(env["SSL_CERT_FILE"]), "SSL_CERT_FILE", shared=shared)
    if env.get("SSL_CERT_DIR"):
        return _context_from_path(Path(env["SSL_CERT_DIR"]), "SSL_CERT_DIR", shared=shared)
    return _context_from_path(Path(certifi.where()), "certifi's bundle", shared=shared)


# Verifying contexts made from a CA bundle, by the bundle's path and the state of its
# file: reading the bundle (certifi's: ~150 certificates) costs ~20 ms of CPU, paid by
# every client made before; a service making a client per job, or a test suite, paid
# it each time. A context is never changed once made (a client certificate gets a
# context of its own), so clients can share it, as aiohttp's and httpx's defaults are.
_SHARED_CONTEXTS: dict[tuple[str, bool, int, int], ssl.SSLContext] = {}
_MAX_SHARED_CONTEXTS = 8


def _context_from_path(path: Path, name: str, *, shared: bool = False) -> ssl.SSLContext:
    key = None
    if shared:
        try:
            state = path.stat()
        except OSError:
            pass  # said below, by the load that fails
        else:
            key = (str(path), path.is_dir(), state.st_mtime_ns, state.st_size)
            context = _SHARED_CONTEXTS.get(key)
            if context is not None:
                return context
    try:
        if path.is_dir():
            context = ssl.create_default_context(capath=str(path))
        else:
            context = ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{name} names {str(path)!r}, which is not a readable CA bundle (PEM file or "
            f"hashed directory): {exc}"
        ) from None
    if key is not None:
        if len(_SHARED_CONTEXTS) >= _MAX_SHARED_CONTEXTS:
            _SHARED_CONTEXTS.clear()
        _SHARED_CONTEXTS[key] = context
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: CertTypes) -> None:
    parts: tuple[str, ...] = (
        (os.fspath(cert),) if isinstance(cert, str | os.PathLike) else tuple(cert)
    )
    certfile = parts[0]
    keyfile = parts[1] if len(parts) > 1 else None
    password = parts[2] if len(parts) > 2 else None
    try:
        context.load_cert_chain(certfile, keyfile, password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cert: cannot load the client certificate {certfile!r}: {exc}"
        ) from None
