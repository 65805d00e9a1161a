"""The daemon's request-target parsing agrees with urllib.parse, which it avoids importing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from corral.api.http import split_target

TARGETS = [
    "/v1/status", "/v1/logs?agent=web&agent=db&tail=10", "/v1/logs?grep=a+b%20c&level=",
    "/v1/logs?grep=%E2%9C%93%zz%4&since=10m#frag", "/v1/events?logs=1&&x&=y&z=%2B",
    "/v1/logs?grep=caf%C3", "/?a=1;b=2", "/p%20q?x=%25", "http://localhost/v1/status?a=1",
    "http://localhost", "/v1/logs?agent=a=b", "", "/v1/logs?tail=&x", "/v1/logs?=&&=",
]


@pytest.mark.parametrize("target", TARGETS)
def test_split_target_matches_urllib(target: str) -> None:
    url = urlsplit(target)
    assert split_target(target) == (url.path, parse_qs(url.query, keep_blank_values=True))
