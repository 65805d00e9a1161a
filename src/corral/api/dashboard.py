"""The web dashboard's door: a listener on 127.0.0.1 that serves the front end and passes a
bounded set of the API's routes to ``Api``, to a browser holding a session, and to no one else.

Who gets in:

- the project's **token** (``dashboard.token`` in the state dir, mode 0600, made at the first
  start and kept): ``Authorization: Bearer TOKEN`` is a script's way in (curl, the bench);
- a **one-time code** the CLI asks for over the owner-only Unix socket (``POST
  /v1/dashboard``) and hands to the browser in the link's fragment (``/#code=…``: a fragment
  is never sent in a request, a Referer or a server log). The page posts it to ``/session``
  once; the code is dead from then on (and after ``CODE_TTL`` unused), and the page holds the
  **session** it got in its tab's ``sessionStorage``, sent as a bearer on each request.

Not a cookie: cookies are kept per host, not per port, so a browser sends a 127.0.0.1 cookie
to every 127.0.0.1 port, another local user's server included; a tab's storage belongs to
its origin, port and all. Sessions live in the daemon's memory: a new daemon needs a new link.

Every request must name the dashboard's own address in ``Host`` (a page of another name
that resolves to 127.0.0.1, DNS rebinding, gets 403), and a request that changes the fleet
must come from the dashboard's own origin when it says where it comes from (``Origin``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import time

# hmac.compare_digest without hmac: importing hmac loads OpenSSL's libcrypto (+3.6 MB resident
# in the daemon for the rest of its life); without OpenSSL, hmac's compare_digest is this one
from _operator import _compare_digest as same_secret
from dataclasses import replace
from typing import Any

from corral import paths
from corral.api.http import Reply, Request, Stream, error_reply, json_reply
from corral.api.listener import Budget, Listener, Settings, tcp_socket
from corral.errors import CorralError

HOST = "127.0.0.1"
CODE_TTL = 120.0  # seconds a one-time code may wait for its browser
SESSION_TTL = 12 * 3600.0
MAX_CODES = MAX_SESSIONS = 64  # past it the oldest goes: a flood cannot grow the daemon
CAP = 32  # connections at once; each open tab holds one or two streams
# what a session may ask of the API: what the views show, and the four buttons; not apply,
# rm, down, shutdown, exec (an agent's environment holds its secrets) nor new links
OPEN = frozenset({("GET", "/"), ("GET", "/assets/{name}"), ("POST", "/session")})
ALLOWED = frozenset(
    {
        ("GET", "/v1/status"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/logs"),
        ("GET", "/v1/events"),
        ("GET", "/v1/journal"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/start"),
        ("POST", "/v1/stop"),
        ("POST", "/v1/restart"),
        ("POST", "/v1/scale"),
    }
)
HEADERS = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)


def load_token(state_dir: str) -> str:
    """The project's token: read from its file, or made there (0600 from the first byte). A
    file another user owns or others may read is refused: its token is no secret."""
    path = paths.dashboard_token(state_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = _random(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _read_token(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise CorralError(
                f"{path} may be read by others (mode {st.st_mode & 0o777:o})",
                f"remove it (rm {path}): the daemon makes a new one, mode 0600",
            )
        token = f.read().strip()
    if len(token) < 32:
        raise CorralError(f"{path} holds no token", f"remove it (rm {path}) and run again")
    return token


def _random(size: int) -> str:
    """``secrets.token_urlsafe(size)``, without ``secrets`` (it imports hmac, see above)."""
    return base64.urlsafe_b64encode(os.urandom(size)).rstrip(b"=").decode()


class Access:
    """The token, the one-time codes not yet used and the sessions, each with its expiry."""

    def __init__(self, token: str, clock: Any = time.monotonic) -> None:
        self._token = token
        self._clock = clock
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, float] = {}

    def issue(self) -> str:
        """A new one-time code, good for ``CODE_TTL`` seconds."""
        self._expire(self._codes)
        code = _random(24)
        _bounded_put(self._codes, code, self._clock() + CODE_TTL, MAX_CODES)
        return code

    def redeem(self, code: str) -> str | None:
        """A session for ``code``, which is dead from now on; None if it was never issued,
        was used already or has expired."""
        self._expire(self._codes)
        if self._codes.pop(code, None) is None:
            return None
        self._expire(self._sessions)
        session = _random(32)
        _bounded_put(self._sessions, session, self._clock() + SESSION_TTL, MAX_SESSIONS)
        return session

    def admits(self, authorization: str | None) -> bool:
        """Whether ``Authorization: Bearer X`` carries the token or a live session."""
        scheme, _, given = (authorization or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return False
        if same_secret(given.encode(), self._token.encode()):
            return True
        expiry = self._sessions.get(given)  # a dict lookup: a session is 256 random bits
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._sessions[given]
            return False
        return True

    def _expire(self, kept: dict[str, float]) -> None:
        now = self._clock()
        for key in [k for k, at in kept.items() if at <= now]:
            del kept[key]


def _bounded_put(kept: dict[str, float], key: str, expiry: float, bound: int) -> None:
    while len(kept) >= bound:
        del kept[next(iter(kept))]  # the oldest
    kept[key] = expiry


def _route(req: Request) -> tuple[str, str]:
    if req.path.startswith("/assets/"):
        return req.method, "/assets/{name}"
    return req.method, req.path


class Dashboard:
    """The listener and its gate; ``link`` makes the one-time link to hand to a browser."""

    def __init__(
        self,
        api: Any,
        state_dir: str,
        port: int,
        *,
        settings: Settings,
        budget: Budget,
        peers: list[Listener],
    ) -> None:
        self.api = api
        self.access = Access(load_token(state_dir))
        try:
            sock = tcp_socket(HOST, port)
        except OSError as exc:
            raise CorralError(
                f"dashboard port {HOST}:{port} is unavailable ({exc.strerror or exc})",
                "free the port or choose another (--port, dashboard.port)",
            ) from None
        self.port: int = sock.getsockname()[1]
        self.origins = {f"http://{HOST}:{self.port}", f"http://localhost:{self.port}"}
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        limits = replace(settings.limits, max_body_bytes=64 * 1024)
        self.listener = Listener(
            sock,
            self,
            name=f"dashboard {HOST}:{self.port}",
            cap=CAP,
            limits=limits,
            budget=budget,
            peers=peers,
        )
        peers.append(self.listener)

    def link(self) -> dict[str, Any]:
        url = f"http://{HOST}:{self.port}/"
        return {
            "url": url,
            "port": self.port,
            "link": f"{url}#code={self.access.issue()}",
            "expires_in": CODE_TTL,
        }

    async def __call__(self, req: Request) -> Reply | Stream:
        return _secured(await self._answer(req))

    async def _answer(self, req: Request) -> Reply | Stream:
        if (req.header("host") or "").lower() not in self.hosts:
            return error_reply(
                403,
                "the dashboard answers only at its own address",
                f"open http://{HOST}:{self.port}/",
            )
        key = _route(req)
        if req.method == "POST":
            origin = req.header("origin")
            if origin is not None and origin not in self.origins:
                return error_reply(
                    403,
                    f"a request from {origin} may not drive the fleet",
                    f"use the dashboard at http://{HOST}:{self.port}/",
                )
        if key == ("POST", "/session"):
            return self._session(req)
        if key in OPEN:
            reply: Reply | Stream = await self.api(req)
            return reply
        if key not in ALLOWED:
            return error_reply(
                404,
                f"no route {req.method} {req.path} on the dashboard",
                "the dashboard serves the views' routes only; the CLI has all",
            )
        if not self.access.admits(req.header("authorization")):
            return Reply(
                401,
                b'{"error":"no session: this dashboard needs its link",'
                b'"fix":"run \'corral dashboard\' and open the link it prints"}',
                headers=(("www-authenticate", 'Bearer realm="corral"'),),
            )
        if (
            req.method == "POST"
            and req.header("origin") is None
            and req.header("sec-fetch-site") not in (None, "same-origin", "none")
        ):
            return error_reply(
                403, "a cross-site request may not drive the fleet", "use the dashboard's own page"
            )
        answer: Reply | Stream = await self.api(req)
        return answer

    def _session(self, req: Request) -> Reply:
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            code = req.json().get("code")
            if isinstance(code, str) and code:
                session = self.access.redeem(code)
                if session is not None:
                    return json_reply({"session": session})
        return error_reply(
            401,
            "this link was used already, has expired or was never made",
            "run 'corral dashboard' for a new one",
        )

    def close(self) -> None:
        self.listener.close()


def _secured(reply: Reply | Stream) -> Reply | Stream:
    if isinstance(reply, Stream):
        reply.headers.extend(h for h in HEADERS if h[0] != "cache-control")
        return reply
    return replace(reply, headers=(*reply.headers, *HEADERS))


__all__ = ["Access", "Dashboard", "load_token"]
