r"""Removing the API key from anything a server sends back, in every form it can come back in.

The key travels in the JSON request body, so a server or proxy that echoes the body (an
error page, a debug header, a reason phrase such as `HTTP/1.1 400 {"key": ...}`) hands it
back. It need not come back verbatim: JSON may escape any character as `\uXXXX` (or `/` as
`\/`), a URL may percent-encode it, an HTML page may use character references, a Python
log may show `\xNN`. `Redactor` matches all of those, in any mix and any case of hex.
"""

from __future__ import annotations

import builtins
import re
import string
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

__all__ = ["REDACTED", "SHORT_KEY_CHARS", "Redactor", "SecretBody"]

REDACTED = "***"

SHORT_KEY_CHARS = 16
"""Keys shorter than this are redacted only as whole tokens, never inside other words.

A real ModelsLab key is 60 random characters: it never occurs by chance, so every
occurrence is an echo and goes. A key under 16 characters is a test or placeholder key
("png", "test", "sk-123"), and such strings occur in ordinary answers (`.png` in every
output URL): redacting them as substrings would corrupt responses that never contained the
key as sent. 16 characters is where even a word-like key stops being a plausible fragment
of a URL or a message, while every key a person would actually issue is at least that long.
"""

_T = TypeVar("_T")


def _hex(value: int, width: int) -> str:
    """`value` as a regex matching its hex digits in either case."""
    digits = f"{value:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _char_forms(char: str) -> str:
    """A regex matching one character of the key in every way it can be escaped."""
    code = ord(char)
    utf8 = char.encode()
    forms = [re.escape(char)]
    # JSON: \uXXXX (a surrogate pair beyond the BMP), and the short escapes; each escape's
    # backslash may come doubled, as the repr of escaped text shows it (httpcore logs the
    # headers of every answer as a repr of bytes).
    bs = r"\\\\?"
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"{bs}u{_hex(high, 4)}{bs}u{_hex(low, 4)}")
    else:
        forms.append(rf"{bs}u{_hex(code, 4)}")
    forms += {"/": [rf"{bs}/"], "\\": [r"(?:\\\\){1,2}"], '"': [rf"{bs}\""], "'": [rf"{bs}'"]}.get(
        char, []
    )
    # Python reprs (log lines of bytes): \xNN per UTF-8 byte.
    forms.append("".join(rf"\\x{_hex(byte, 2)}" for byte in utf8))
    # URLs: quote / quote_plus percent-encode each UTF-8 byte; quote_plus turns " " to "+".
    forms.append("".join(f"%{_hex(byte, 2)}" for byte in utf8))
    if char == " ":
        forms.append(r"\+")
    # HTML character references, as an error page may echo the body.
    forms.append(f"&#[xX]0*{_hex(code, 1)};|&#0*{code};")
    return "(?:" + "|".join(forms) + ")"


# What follows a webhook URL in a capability URL: `/track_id/token`, each character in any
# form the URL's own characters may take (the token is the credential).
_URL_TAIL = (
    "(?:"
    + "|".join(_char_forms(char) for char in "/_-" + string.ascii_letters + string.digits)
    + ")*"
)


# Escapes that spell any character: JSON's \u, Python's \x, percent (%XX) and HTML (&#)
# escapes, and an escaped backslash (once JSON is decoded, `\\x41` is `\x41`). Escapes
# that spell one character each: JSON's (and a repr's) backslash before these, keyed by
# the character they spell. See `Redactor._may_contain_text`.
_PERCENT_TEXT = re.compile("%[0-9A-Fa-f]")
_PERCENT_BYTES = re.compile(b"%[0-9A-Fa-f]")
_ONE_CHAR_ESCAPES = {
    "/": "/",
    '"': '"',
    "'": "'",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
}


def _longest_run(secret: str) -> str:
    """The longest stretch of `secret` free of the characters `_ONE_CHAR_ESCAPES` names."""
    return max(re.split("[" + re.escape("".join(_ONE_CHAR_ESCAPES)) + "]", secret), key=len)


_USUAL_TEXTS = ("", "OK", "Not Found", "Too Many Requests", "Bad Gateway", "Service Unavailable")


class Redactor:
    """Knows every textual form of one API key and replaces it with `***`.

    Long keys (`SHORT_KEY_CHARS` or more) are redacted wherever they occur. Short keys only
    as whole tokens: a complete (JSON or quoted) string, a whole header value or text, or
    `key=<key>`; so a response that does not contain the key as sent is never altered.

    `urls` (the webhook URL) are redacted wherever they occur too, in every form the key
    is, together with the path segments that follow them: ModelsLab echoes each
    `webhook` it was given, whose last segment (the token) is the credential.
    """

    __slots__ = (
        "__weakref__",
        "_bytes_pattern",
        "_key",
        "_long",
        "_marks_bytes",
        "_marks_text",
        "_runs_bytes",
        "_runs_text",
        "_space",
        "_text_pattern",
        "_unchanged",
    )

    def __init__(self, key: str, *, urls: tuple[str, ...] = ()) -> None:
        self._key = key
        self._long = len(key) >= SHORT_KEY_CHARS
        form = "".join(_char_forms(char) for char in key)
        if self._long:
            pattern = form
        else:
            # Whole tokens only: the complete value of a quoted string (also inside a
            # JSON-escaped string, `\"key\"`), the whole text (a header value, a reason
            # phrase), or the value of `key=` / `api_key=` in a query or form.
            end = r"(?=$|[&\s;,\"'<>)\]}#\\])"
            pattern = "|".join(
                [
                    rf"(?<=\"){form}(?=\\?\")",
                    rf"(?<='){form}(?=\\?')",
                    rf"\A\s*{form}\s*\Z",
                    rf"(?<=(?<![A-Za-z0-9])(?i:key)=){form}{end}",
                ]
            )
        for url in urls:
            pattern += "|" + "".join(_char_forms(char) for char in url) + _URL_TAIL
        self._space = " " in key or any(" " in url for url in urls)  # quote_plus: "+"
        secrets = (key, *urls)
        self._runs_text = tuple({_longest_run(secret) for secret in secrets})
        self._runs_bytes = tuple(run.encode() for run in self._runs_text)
        self._marks_text = tuple(
            "\\" + letter
            for char, letter in _ONE_CHAR_ESCAPES.items()
            if any(char in secret for secret in secrets)
        )
        self._marks_bytes = tuple(mark.encode() for mark in self._marks_text)
        self._text_pattern = re.compile(pattern)
        self._bytes_pattern = re.compile(pattern.encode())
        # Reason phrases every answer carries, known here to hold no secret: `text()`
        # returns them at once. Decided by redacting each, so no key is an exception.
        self._unchanged: frozenset[str] = frozenset()
        self._unchanged = frozenset(text for text in _USUAL_TEXTS if self.text(text) == text)

    def __repr__(self) -> str:
        return "Redactor(<key hidden>)"

    # Whether `data` can hold a secret in any form: False only when provably not, and then
    # the (slower) regex is skipped. Spelled out, not any(...): this runs on every header,
    # log record and response. Why it is exact: a form that escapes a character other
    # than / " ' (and JSON's control escapes) shows one of the escape marks; without
    # any, every such character stands as itself, so the longest run of the secret
    # between those characters stands in `data` as sent. Decoding JSON changes nothing
    # to that: without \u and \\, its escapes only make / " and control characters.
    def _may_contain_text(self, data: str) -> bool:
        return (
            "\\" in data
            and (
                "\\u" in data
                or "\\x" in data
                or "\\\\" in data
                or any(mark in data for mark in self._marks_text)
            )
        ) or (
            ("%" in data and _PERCENT_TEXT.search(data) is not None)
            or ("&" in data and "&#" in data)
            or (self._space and "+" in data)
            or (
                self._runs_text[0] in data
                if len(self._runs_text) == 1  # one secret, the usual case: no generator
                else any(run in data for run in self._runs_text)
            )
        )

    def _may_contain_bytes(self, data: builtins.bytes) -> bool:
        return (
            b"\\" in data
            and (
                b"\\u" in data
                or b"\\x" in data
                or b"\\\\" in data
                or any(mark in data for mark in self._marks_bytes)
            )
        ) or (
            (b"%" in data and _PERCENT_BYTES.search(data) is not None)
            or (b"&" in data and b"&#" in data)  # one byte first: memchr, far cheaper
            or (self._space and b"+" in data)
            or (
                self._runs_bytes[0] in data
                if len(self._runs_bytes) == 1
                else any(run in data for run in self._runs_bytes)
            )
        )

    def may_hold(self, body: builtins.bytes) -> bool:
        """Whether a JSON body may hold a secret in any form, raw or once decoded.

        False only when provably not: then neither `bytes(body)` nor `json()` of its
        decoded value would change anything, and both can be skipped. A body that is not
        UTF-8 (JSON may come as UTF-16 or UTF-32) always may.
        """
        return self._may_contain_bytes(body) or not _plain_utf8(body)

    def bytes(self, data: builtins.bytes) -> builtins.bytes:
        """`data` with every occurrence of the key, in any form, replaced by `***`."""
        if not self._may_contain_bytes(data):
            return data
        return self._bytes_pattern.sub(REDACTED.encode(), data)

    def text(self, data: str) -> str:
        """`data` with every occurrence of the key, in any form, replaced by `***`."""
        if data in self._unchanged or not self._may_contain_text(data):
            return data
        return self._text_pattern.sub(REDACTED, data)

    def json(self, value: _T) -> _T:
        """Decoded JSON with the key redacted from every string value and object key."""
        return self._json(value)  # type: ignore[no-any-return]

    def _json(self, value: Any) -> Any:
        # Containers are copied only where something changed: most answers hold no key.
        kind = type(value)
        if kind is str:
            return (
                self._text_pattern.sub(REDACTED, value) if self._may_contain_text(value) else value
            )
        if kind is dict:
            pairs = [(self._json(name), self._json(item)) for name, item in value.items()]
            if all(
                new[0] is old[0] and new[1] is old[1]
                for new, old in zip(pairs, value.items(), strict=True)
            ):
                return value
            return dict(pairs)
        if kind is list:
            items = [self._json(item) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items
        return value

    def headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The headers with the key redacted from names and values; the same object if clean."""
        # One test of all of them joined, in the common case: what any one holds, the
        # joined text holds too.
        if not self._may_contain_text(" ".join([*headers.keys(), *headers.values()])):
            return headers
        pairs = [(name, value) for name, value in headers.items()]
        redacted = [(self.text(name), self.text(value)) for name, value in pairs]
        if redacted == pairs:
            return headers
        return httpx.Headers(redacted)

    def secret(self, content: builtins.bytes) -> SecretBody:
        """Wrap a request body that holds the key, so no repr or traceback shows it."""
        return SecretBody(content, self)


def _plain_utf8(body: builtins.bytes) -> bool:
    # What `json.detect_encoding(body) == "utf-8"` says, without its Python-level steps:
    # a BOM or a NUL among the first four bytes means another encoding (or utf-8-sig).
    head = body[:4]
    return b"\x00" not in head and not head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))


class SecretBody:
    """A request body holding the API key; its repr is redacted, so traceback locals are safe.

    Error trackers (Sentry and the like) record every frame's locals by their repr: the
    transport keeps the body in this wrapper and unwraps it only where it is handed to the
    HTTP backend.
    """

    __slots__ = ("_content", "_redactor")

    def __init__(self, content: bytes, redactor: Redactor) -> None:
        self._content = content
        self._redactor = redactor

    def unwrap(self) -> bytes:
        """The body as bytes, key included: hand it straight to the backend, never keep it."""
        return self._content

    def __repr__(self) -> str:
        return f"SecretBody({self._redactor.bytes(self._content)!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a SecretBody holds the API key and is not picklable")
