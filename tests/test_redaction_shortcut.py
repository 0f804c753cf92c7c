"""Redaction skips a body only when the key provably is not in it, in any form.

The transport decides once per response, by a few byte searches
(`Redactor.may_hold`), whether the body's bytes and its decoded JSON need walking at
all. A wrong "no" would leak the key, so the decision is checked here against the full
redaction over random spellings of the key (each character raw or in any escape, the
whole JSON-encoded again or not) mixed with random text.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_fetch._redaction import Redactor

# A long key with "/" and "+", a short one (whole tokens only), a non-ASCII one, and a
# webhook URL (redacted with the path after it).
LONG_KEY = "Zt4/Qm8+pL2vXw9RkT7yN3bH6cJ1dF5gS0aE8uI2oP4qW6eR9tY3uA7sD1fG"
ALNUM_KEY = "Zt4Qm8pL2vXw9RkT7yN3bH6cJ1dF5gS0aE8uI2oP4qW6eR9tY3uA7sD1fGh2"
REDACTORS = {
    "long": Redactor(LONG_KEY),
    "short": Redactor("png"),
    "non-ascii": Redactor("clé ключ-🔑-0123456789"),
    "webhook": Redactor("k" * 40, urls=("https://hooks.example.com/ml",)),
}
SECRETS = {
    "long": LONG_KEY,
    "short": "png",
    "non-ascii": "clé ключ-🔑-0123456789",
    "webhook": "https://hooks.example.com/ml/123/tok",
}


def spell(char: str, how: int) -> str:
    """One character of a secret, raw or in one of the escapes it may come back in."""
    code = ord(char)
    utf8 = char.encode()
    forms = [
        char,
        f"\\u{code:04x}" if code <= 0xFFFF else json.dumps(char)[1:-1],
        f"\\u{code:04X}" if code <= 0xFFFF else json.dumps(char).upper()[1:-1],
        "".join(f"%{byte:02X}" for byte in utf8),
        "".join(f"%{byte:02x}" for byte in utf8),
        f"&#x{code:x};",
        f"&#{code};",
        "".join(f"\\x{byte:02x}" for byte in utf8),
        "\\/" if char == "/" else "+" if char == " " else char,
        "\\\\u{code:04x}" if code <= 0xFFFF else char,
    ]
    return forms[how % len(forms)]


@st.composite
def bodies(draw: st.DrawFn, secret: str) -> bytes:
    """A body around a spelling of `secret` (or of a piece of it), JSON or not."""
    start = draw(st.integers(0, len(secret) - 1))
    end = draw(st.sampled_from([len(secret), draw(st.integers(start + 1, len(secret)))]))
    ways = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3))
    spelled = "".join(spell(char, ways[i % len(ways)]) for i, char in enumerate(secret[start:end]))
    around = draw(st.text(max_size=12))
    shape = draw(st.sampled_from(["raw", "value", "value-ascii", "name", "key=", "quoted"]))
    if shape == "raw":
        text = around + spelled + around
    elif shape in ("value", "value-ascii"):
        text = json.dumps(
            {"status": "success", "echo": around + spelled, "tip": "20% off"},
            ensure_ascii=shape == "value-ascii",
        )
    elif shape == "name":
        text = json.dumps({spelled: [around], "output": ["https://cdn/x.png"]})
    elif shape == "key=":
        text = json.dumps({"url": f"https://x/?key={spelled}&a={around}"})
    else:
        text = f'{{"a": "{spelled}"}}'
    return text.encode("utf-8", "surrogatepass")


def decoded(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(REDACTORS)))
def test_a_body_is_skipped_only_when_redaction_would_change_nothing(
    data: st.DataObject, name: str
) -> None:
    redactor = REDACTORS[name]
    body = data.draw(bodies(SECRETS[name]))
    if redactor.may_hold(body):
        return
    assert redactor.bytes(body) == body
    value = decoded(body)
    assert redactor.json(value) == value
    text = body.decode("utf-8", "replace")
    assert redactor.text(text) == text


def test_every_echoed_form_of_the_key_is_walked() -> None:
    redactor = REDACTORS["long"]
    for how in range(10):
        spelled = "".join(spell(char, how) for char in LONG_KEY)
        assert redactor.may_hold(json.dumps({"echo": spelled}).encode()), how
        assert redactor.may_hold(spelled.encode()), how
    # JSON may also arrive as UTF-16, where no byte search of UTF-8 text finds anything.
    assert redactor.may_hold(json.dumps({"echo": LONG_KEY}).encode("utf-16"))


def test_ordinary_answers_are_not_walked() -> None:
    # What the shortcut is for: a fetch answer, with the escaped slashes of PHP's JSON,
    # a percent sign in a tip and a `%20` in a URL, needs no redaction at all.
    answer = (
        b'{"status":"success","id":1,"output":["https:\\/\\/cdn.example.com\\/a%20b.png"],'
        b'"tip":"Get 20% off","meta":{"prompt":"a cat"}}'
    )
    # Percent-escapes are a form the key may take, so `%20` keeps the full walk: the
    # shortcut takes the rest.
    assert REDACTORS["long"].may_hold(answer)
    plain = answer.replace(b"%20", b"-")
    assert not Redactor(ALNUM_KEY).may_hold(plain)  # as ModelsLab's keys are
    assert not REDACTORS["non-ascii"].may_hold(plain)
    # Walked, rightly: "png" stands in the answer as itself, and the other key and the
    # webhook URL have a "/", which `\/` may spell.
    for name in ("short", "long", "webhook"):
        assert REDACTORS[name].may_hold(plain), name
