"""Webhook settings: where ModelsLab POSTs, and the secret that makes each URL a credential.

ModelsLab signs no webhook, so each URL carries its proof: `{webhook_url}/{track_id}/{token}`,
`token = HMAC-SHA256(secret, track_id)` (128 bits). The receiver checks it without storing
anything, so a restarted receiver still accepts old URLs. Neither URL nor secret is shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from ._config import Secret, is_loopback
from ._errors import ConfigurationError, UnusableURL
from ._urls import checked_http_url

__all__ = [
    "MIN_SECRET_CHARS",
    "TOKEN_CHARS",
    "TRACK_ID_CHARS",
    "WEBHOOK_SECRET_ENV",
    "WEBHOOK_URL_ENV",
    "WebhookSettings",
    "checked_track_id",
    "new_track_id",
    "resolve_webhooks",
]

WEBHOOK_URL_ENV = "MODELSLAB_WEBHOOK_URL"
WEBHOOK_SECRET_ENV = "MODELSLAB_WEBHOOK_SECRET"  # noqa: S105 - a variable's name

MIN_SECRET_CHARS = 32
"""The shortest `webhook_secret` accepted: a guessable one would let a URL's token be
brute-forced offline."""

TRACK_ID_CHARS = 64
"""The longest `track_id` accepted: letters, digits, `-` and `_` (URL-safe, no escaping)."""

TOKEN_CHARS = 22
"""A token's length: 16 bytes of HMAC-SHA256, base64url without padding (128 bits)."""

_TRACK_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{TRACK_ID_CHARS}}}")
_TOKEN_BYTES = 16
_MAX_PATH_CHARS = 4096
# Domain separation; "v1" lets a later scheme coexist with URLs already handed out.
_CONTEXT = b"modelslab-fetch webhook v1\n"

_MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105


@dataclass(frozen=True, repr=False)
class WebhookSettings:
    """The checked webhook options of one client; never shows the URL or the secret."""

    url: str
    """The public URL the receiver is mounted at, normalised, with no trailing slash."""
    secret: Secret
    """The secret tokens are made with."""
    trust: bool = False
    """Whether a delivery's payload is the result (no confirming fetch)."""
    given_url: str = ""
    """The URL as given, when it differs from `url` (both are redacted)."""

    def __repr__(self) -> str:
        return f"WebhookSettings(url='***', secret='***', trust={self.trust})"

    def token(self, track_id: str) -> str:
        """The token that proves a URL for `track_id` was made with this secret."""
        digest = hmac.new(
            self.secret.get_secret_value().encode(), _CONTEXT + track_id.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest[:_TOKEN_BYTES]).rstrip(b"=").decode("ascii")

    def capability_url(self, track_id: str) -> str:
        """The webhook URL for `track_id`: it carries its own token."""
        return f"{self.url}/{track_id}/{self.token(track_id)}"

    def token_matches(self, track_id: str, token: str) -> bool:
        """Whether `token` is `track_id`'s, compared in constant time."""
        return hmac.compare_digest(self.token(track_id).encode(), token.encode())

    def track_id_of(self, path: str) -> str | None:
        """The `track_id` of `path` if it ends with a URL this secret made, else None.

        Only the last two segments count, so a receiver mounted under any prefix works.
        """
        if not isinstance(path, str) or len(path) > _MAX_PATH_CHARS:
            return None
        if "://" in path:
            path = urlsplit(path).path
        path = path.partition("?")[0]
        head, _, token = path.rpartition("/")
        track_id = head.rpartition("/")[2]
        if len(token) != TOKEN_CHARS or not _TRACK_ID.fullmatch(track_id):
            return None
        return track_id if self.token_matches(track_id, token) else None

    def redacted_forms(self) -> tuple[str, ...]:
        """Every spelling of the webhook URL to remove from what servers send back."""
        return tuple(dict.fromkeys(form for form in (self.url, self.given_url) if form))


def new_track_id() -> str:
    """A fresh `track_id`: 16 random bytes, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def checked_track_id(track_id: object) -> str:
    """`track_id` if it is usable in a webhook URL; else `ConfigurationError` saying why."""
    if not isinstance(track_id, str):
        raise ConfigurationError(
            f"track_id must be a str (letters, digits, '-' and '_'); got {type(track_id).__name__}"
        )
    if not _TRACK_ID.fullmatch(track_id):
        raise ConfigurationError(
            f"track_id must be 1-{TRACK_ID_CHARS} letters, digits, '-' or '_' (it goes in "
            "the webhook URL's path); leave it out to have one made"
        )
    return track_id


def resolve_webhooks(
    webhook_url: str | None,
    webhook_secret: str | SecretStr | None,
    *,
    trust: bool = False,
    environ: Mapping[str, str] | None = None,
) -> WebhookSettings | None:
    """The webhook settings from the arguments, else the environment; None when neither is set.

    Raises `ConfigurationError` (never quoting the URL or the secret).
    """
    env = os.environ if environ is None else environ
    if not isinstance(trust, bool):
        raise ConfigurationError(f"trust_webhooks must be True or False; got {trust!r}")
    url = webhook_url if webhook_url is not None else (env.get(WEBHOOK_URL_ENV) or None)
    secret = webhook_secret if webhook_secret is not None else (env.get(WEBHOOK_SECRET_ENV) or None)
    if url is None and secret is None:
        if trust:
            raise ConfigurationError(
                "trust_webhooks=True needs webhooks: pass webhook_url=... and "
                f"webhook_secret=... (or set {WEBHOOK_URL_ENV} and {WEBHOOK_SECRET_ENV})"
            )
        return None
    if secret is None:
        raise ConfigurationError(
            f"webhook_url is set but no webhook_secret: pass webhook_secret=... or set "
            f"{WEBHOOK_SECRET_ENV} (make one with: {_MAKE_SECRET})"
        )
    if url is None:
        raise ConfigurationError(
            "webhook_secret is set but no webhook_url: pass webhook_url=... (the public "
            "https URL where client.webhooks.asgi_app() is mounted) or set "
            f"{WEBHOOK_URL_ENV}"
        )
    normalised, given = _checked_url(url)
    return WebhookSettings(
        url=normalised,
        secret=_checked_secret(secret),
        trust=trust,
        given_url=given if given != normalised else "",
    )


def _checked_url(url: object) -> tuple[str, str]:
    if not isinstance(url, str):
        raise ConfigurationError(f"webhook_url must be a str; got {type(url).__name__}")
    text = url.strip()
    if any(char.isspace() for char in text):
        raise ConfigurationError("webhook_url cannot contain spaces or line breaks")
    try:
        parsed = checked_http_url(text)
    except UnusableURL:
        raise ConfigurationError(
            "webhook_url is not a usable URL: give the public https:// URL where "
            "client.webhooks.asgi_app() is mounted, like 'https://example.com/hooks/modelslab'"
        ) from None
    if parsed.userinfo:
        raise ConfigurationError("webhook_url cannot carry a user name or password")
    if parsed.query or parsed.fragment:
        raise ConfigurationError(
            "webhook_url cannot carry a query or fragment: the track id and token are "
            "appended to its path"
        )
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise ConfigurationError(
            "webhook_url must be https:// (ModelsLab requires it, and the URL is the "
            "credential: in plain http anyone on the way could read and replay it); "
            "plain http is allowed only to loopback hosts such as 127.0.0.1"
        )
    return str(parsed).rstrip("/"), text.rstrip("/")


def _checked_secret(secret: object) -> Secret:
    if isinstance(secret, SecretStr | Secret):
        secret = secret.get_secret_value()
    if not isinstance(secret, str):
        raise ConfigurationError(
            f"webhook_secret must be a str or SecretStr; got {type(secret).__name__}"
        )
    text = secret.strip()
    if len(text) < MIN_SECRET_CHARS:
        raise ConfigurationError(
            f"webhook_secret must be at least {MIN_SECRET_CHARS} characters of randomness "
            f"(make one with: {_MAKE_SECRET})"
        )
    return Secret(text)
