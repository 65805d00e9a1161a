"""A real browser for the dashboard's tests: Debian's Chromium (``/usr/bin/chromium``), headless,
driven by Playwright from PyPI (never ``playwright install``: it would download a browser of
its own, which these machines cannot). Each launch gets a fresh profile (Playwright makes a
new user data dir per launch) and the flags that keep Chromium off the network: without them
it keeps trying Google's hosts, refused here.

Skipped with the reason where either is missing (``scripts/install.sh --test`` installs both).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no {CHROMIUM}: scripts/install.sh --test installs it (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: pip install -e '.[test]'"
    return None


needs_browser = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's ``Browser``), closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
