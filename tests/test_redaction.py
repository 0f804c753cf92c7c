"""How a secret is redacted: every spelling of a long key, a short key only as a whole token,
the log filter on every logger, the webhook URL with its token and the webhook secret.

That no path shows the key at all is tests/test_secrets.py.
"""

from __future__ import annotations

import gc
import json
import logging
import pickle
import re
import urllib.parse

import httpx
import pytest

from modelslab_fetch import (
    AsyncModelsLab,
)
from modelslab_fetch._logging import LOGGER_NAMES, KeyRedactingFilter
from modelslab_fetch._logging import install_key_filter as install
from modelslab_fetch._redaction import SHORT_KEY_CHARS, Redactor
from tests.conftest import Capture
from tests.test_secrets import FORMS, KEY, WEBHOOK_SECRET, WEBHOOK_URL, leaks, webhook_spellings


async def test_a_short_key_leaves_responses_that_do_not_contain_it_unchanged() -> None:
    from modelslab_fetch.testing import Simulator, SimulatorApp, in_process_client

    simulator = Simulator(api_key="png", seed=1)
    app = SimulatorApp(simulator, seed=1)
    ids = [simulator.queue(images=3) for _ in range(3)]
    async with in_process_client(app, api_key="png") as client:
        for rid in ids:
            result = await client.images.fetch(rid)
            assert result.succeeded
            assert len(result.output) == 3
            assert all(url.endswith(".png") and "***" not in url for url in result.output)
            assert "***" not in json.dumps(result.raw)


def test_a_short_key_is_redacted_only_as_a_whole_token() -> None:
    assert len("png") < SHORT_KEY_CHARS
    redactor = Redactor("png")
    untouched = [
        "http://127.0.0.1/generations/1-0.png",
        '{"output": ["https:\\/\\/cdn\\/a.png?x=1"]}',
        "image/png",
        "apng pngs png-like",
        "monkey=png",
        "%70ng.png",
    ]
    for text in untouched:
        assert redactor.text(text) == text
        assert redactor.bytes(text.encode()) == text.encode()
    redacted = {
        '{"key": "png"}': '{"key": "***"}',
        '{"key": "\\u0070\\u006E\\u0067"}': '{"key": "***"}',
        '"{\\"key\\": \\"png\\"}"': '"{\\"key\\": \\"***\\"}"',
        "png": "***",
        "?key=png&x=1": "?key=***&x=1",
        "api_key=png": "api_key=***",
        "(b'X-Echo', b'png')": "(b'X-Echo', b'***')",
    }
    for text, expected in redacted.items():
        assert redactor.text(text) == expected
    assert redactor.json({"png": ["png", "a.png"], "k": {"v": "png"}}) == {
        "***": ["***", "a.png"],
        "k": {"v": "***"},
    }
    headers = httpx.Headers({"content-type": "image/png", "x-echo": "png"})
    assert dict(redactor.headers(headers)) == {"content-type": "image/png", "x-echo": "***"}


def test_a_long_key_is_redacted_in_every_form() -> None:
    redactor = Redactor(KEY)
    spellings = [
        *FORMS,
        json.dumps(KEY, ensure_ascii=True)[1:-1],
        re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), urllib.parse.quote(KEY, safe="")),
        repr(KEY.encode())[2:-1],
        "".join(f"&#x{ord(c):x};" for c in KEY),
        "".join(f"&#{ord(c)};" for c in KEY),
    ]
    for spelling in spellings:
        text = f"before {spelling} after"
        assert redactor.text(text) == "before *** after", spelling
        assert redactor.bytes(text.encode()) == b"before *** after"
        assert redactor.json({spelling: [spelling]}) == {"***": ["***"]}
    clean = httpx.Headers({"content-type": "application/json"})
    assert redactor.headers(clean) is clean
    answer = {"status": "success", "output": ["https://x/a.png?x=%20"], "tip": "20% off"}
    assert redactor.json(answer) is answer  # nothing to redact: not even copied
    assert KEY not in repr(redactor) and KEY not in repr(redactor.secret(KEY.encode()))
    with pytest.raises(TypeError):
        pickle.dumps(redactor.secret(KEY.encode()))


def test_a_non_ascii_key_is_redacted_in_its_escaped_forms() -> None:
    key = "clé ключ-🔑-0123456789"
    redactor = Redactor(key)
    for spelling in (
        key,
        json.dumps(key)[1:-1],
        urllib.parse.quote(key),
        urllib.parse.quote_plus(key),
        repr(key.encode())[2:-1],
    ):
        assert redactor.text(f"<{spelling}>") == "<***>", spelling


def test_the_log_filter_is_installed_once_per_logger_and_covers_every_live_key(
    logs: Capture,
) -> None:
    first = AsyncModelsLab(api_key=KEY)
    second = AsyncModelsLab(api_key="another-key-0123456789-abcdef")
    install()
    for name in LOGGER_NAMES:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, KeyRedactingFilter) for f in filters) == 1, name
    for name in ("httpcore.http11", "httpx", "modelslab_fetch"):
        # WARNING: a CLI run elsewhere in the session may have raised our logger's level.
        logging.getLogger(name).warning("a=%s b=%r", KEY, b"another-key-0123456789-abcdef")
    assert len(logs.lines) == 6
    assert leaks(logs.lines) == []
    assert not any("another-key-0123456789-abcdef" in line for line in logs.lines)
    assert "a=*** b=b'***'" in logs.lines[0]
    del first, second
    gc.collect()
    logging.getLogger("httpx").warning("gone %s", "another-key-0123456789-abcdef")
    assert logs.lines[-2].endswith("gone another-key-0123456789-abcdef"), "held weakly"


def test_the_log_filter_redacts_tracebacks_and_leaves_malformed_records_alone(
    logs: Capture,
) -> None:
    client = AsyncModelsLab(api_key=KEY)
    logger = logging.getLogger("httpcore.connection")
    try:
        raise RuntimeError(f"echo {KEY}")
    except RuntimeError:
        logger.warning("failed", exc_info=True)
    assert "RuntimeError: echo ***" in logs.lines[0]
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "%d", ("x",), None)
    assert KeyRedactingFilter().filter(record)  # kept, untouched: the handler reports it
    assert (record.msg, record.args) == ("%d", ("x",))
    assert leaks(logs.lines) == []
    del client


def test_the_webhook_url_is_redacted_with_its_token_in_every_form() -> None:
    client = AsyncModelsLab(api_key=KEY, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET)
    url = client.webhooks.fields("trk-1")["webhook"]
    token = url.rsplit("/", 1)[1]
    redactor = client._transport._redactor
    for spelling in webhook_spellings(url):
        text = f'{{"meta": {{"webhook": "{spelling}", "seed": 1}}}}'
        redacted = redactor.text(text)
        assert redacted == '{"meta": {"webhook": "***", "seed": 1}}', spelling
        assert redactor.bytes(text.encode()) == redacted.encode()
        assert redactor.json({"webhook": spelling}) == {"webhook": "***"}
    # The token never survives, even echoed inside a longer text.
    assert token not in redactor.text(f"posted to {url} at noon")
    # Without webhooks, the same text is left alone.
    plain = AsyncModelsLab(api_key=KEY)._transport._redactor
    assert plain.text(f"posted to {url}") == f"posted to {url}"


def test_the_log_filter_redacts_the_webhook_secret(logs: Capture) -> None:
    client = AsyncModelsLab(api_key=KEY, webhook_url=WEBHOOK_URL, webhook_secret=WEBHOOK_SECRET)
    url = client.webhooks.fields("trk-3")["webhook"]
    logging.getLogger("modelslab_fetch").warning("settings: %s %s", WEBHOOK_SECRET, url)
    assert WEBHOOK_SECRET not in logs.lines[0]
    assert url.rsplit("/", 1)[1] not in logs.lines[0]
    del client
