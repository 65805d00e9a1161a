"""Every form of a secret the sink can derive cheaply is hidden, in both streams, on the plain
and the JSON record paths, in torn and over-long lines; short values keep only the raw form."""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from corral.logs.redact import MIN_EMBEDDED, Redactor, forms
from corral.logs.sink import AgentLog

SECRET = "pa55/w0rd+s3cr3t?&=é"


def _encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "raw": value,
        "base64": base64.b64encode(raw).decode(),
        "base64-nopad": base64.b64encode(raw).decode().rstrip("="),
        "base64-urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "hex": binascii.hexlify(raw).decode(),
        "HEX": binascii.hexlify(raw).decode().upper(),
        "quote": quote(value, safe=""),
        "quote-slash": quote(value),
        "quote_plus": quote_plus(value),
        "quote-lower": re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), quote(value, safe="")),
        "json": json.dumps(value)[1:-1],
        "json-unicode": json.dumps(value, ensure_ascii=False)[1:-1],
    }


@pytest.mark.parametrize(("form", "text"), sorted(_encodings(SECRET).items()))
def test_each_form_of_a_secret_is_hidden(form: str, text: str) -> None:
    redact = Redactor([SECRET])
    line = f"before {text} after".encode()
    out = redact(line)
    assert out.startswith(b"before ***"), (form, out)
    assert out.endswith(b"*** after") or out.endswith(b"***= after"), (form, out)
    assert text.encode() not in out, form


@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:", b'{"token":"'])
def test_base64_of_a_stream_holding_the_secret_is_hidden_at_every_offset(prefix: bytes) -> None:
    value = "tok-0123456789abcdef"
    blob = base64.b64encode(prefix + value.encode() + b'"}tail')
    out = Redactor([value])(b"Authorization: Basic " + blob)
    assert b"***" in out
    # what is left are the prefix's and the tail's characters only: not enough to decode
    # more than 2 bytes of the value at either end
    left = out.split(b"***")
    assert len(b"".join(left)) < len(b"Authorization: Basic ") + len(blob) - 20


def test_short_values_keep_only_their_raw_form() -> None:
    assert forms("abc") == {b"abc"}
    four = forms("abcd")
    assert b"abcd" in four and b"61626364" in four and b"YWJjZA" in four
    # no mid-stream base64 pieces below MIN_EMBEDDED bytes: they would match ordinary text
    assert all(len(n) >= 4 for n in four)
    seven = forms("a" * (MIN_EMBEDDED - 1))
    eight = forms("a" * MIN_EMBEDDED)
    assert len(eight) > len(seven)
    assert forms("") == set()


def test_longest_needle_first_and_shared_updates() -> None:
    redact = Redactor()
    assert not redact and redact(b"x") == b"x"
    assert redact.add(["hunter22"]) and not redact.add(["hunter22", ""])
    # base64 of the value starts with the base64 of its first bytes: the whole form goes
    assert redact(b"hunter22 and " + base64.b64encode(b"hunter22")) == b"*** and ***="
    lengths = [len(n) for n in redact.needles]
    assert lengths == sorted(lengths, reverse=True)
    redact.add(["other-secret"])
    assert redact(b"other-secret") == b"***"


def test_sink_redacts_derived_forms_in_both_streams_json_torn_and_long_lines(
        tmp_path: Path) -> None:
    log = AgentLog(tmp_path, "a", max_line=64)
    out = log.writer("a.1")
    shared = Redactor()
    out.use_redactor(shared)
    shared.add([SECRET])  # after the output was made: shared, so it applies
    forms_ = _encodings(SECRET)
    b64, hexed = forms_["base64"].encode(), forms_["hex"].encode()
    out.feed("stdout", b"plain " + b64 + b"\n")
    out.feed("stderr", b'{"msg": "' + forms_["json"].encode() + b'", "level": "error"}\n')
    out.feed("stdout", b"torn " + hexed[:10])
    out.feed("stdout", hexed[10:] + b"\n")
    out.feed("stderr", b"x" * 40 + hexed + b"y" * 40 + b"\n")  # over max_line
    log.close()
    text = (tmp_path / "a.log").read_bytes()
    records = [json.loads(line) for line in text.splitlines()]
    assert {r["stream"] for r in records} == {"stdout", "stderr"}
    for needle in (SECRET.encode(), b64.rstrip(b"="), hexed, forms_["json"].encode()):
        assert needle not in text
    assert records[0]["message"].startswith("plain ***")
    assert records[1]["message"] == "***" and records[1]["level"] == "error"
    assert records[2]["message"] == "torn ***"
    assert "***" in "".join(r["message"] for r in records[3:])


@pytest.mark.parametrize("value", [SECRET, "a b/c~d_e.f-g", "\x00\x7f\u2603 +%"])
def test_the_url_forms_are_urllibs(value: str) -> None:
    found = forms(value + "-pad")  # long enough for derived forms
    for text in (quote(value + "-pad", safe=""), quote(value + "-pad"),
                 quote_plus(value + "-pad", safe="")):
        assert text.encode() in found, text
