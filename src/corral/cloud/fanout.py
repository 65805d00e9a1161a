"""``fan_out``: invoke a Lambda function once per item (or per batch) from an agent.

For agents, not the daemon: boto3 is imported when ``fan_out`` first runs. The agent's SDK
finds its region, endpoint and short-lived credentials the way corral set them up (the
``credential_process`` config of its ``aws:`` block); ``client=`` takes any Lambda client.

Results come in item order (``ordered=True``) or as they complete. A throttle (429,
``TooManyRequestsException``), a transport error or a function error is retried up to
``retries`` times with exponential backoff and full jitter; what still fails comes back as a
``Result`` with ``ok=False``, its error and its payload (partial failures never raise).
Only ``concurrency`` invocations are in flight, and only that many items are read ahead, so
``items`` may be a generator of any length.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

_BILLED = re.compile(r"Billed Duration:\s*(\d+)\s*ms")
_THROTTLES = {
    "TooManyRequestsException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "EC2ThrottledException",
    "ServiceException",
}


@dataclass(frozen=True)
class Result:
    """One invocation's outcome: ``index`` of its first item, the ``payload`` sent (an item,
    or a list of items with ``batch``), the function's ``value`` or the ``error``."""

    index: int
    payload: Any
    ok: bool
    value: Any = None
    error: str = ""
    attempts: int = 1
    billed_ms: int = 0
    log: str = ""


def function_name(name: str) -> str:
    """An agent's name as corral deployed it (``CORRAL_FUNCTION_<NAME>`` in the caller's
    environment), else ``name`` itself (a function name or ARN)."""
    key = "CORRAL_FUNCTION_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return os.environ.get(key, name)


def _client(concurrency: int) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=max(10, concurrency),
        retries={"mode": "standard", "max_attempts": 1},
        read_timeout=900,
        connect_timeout=10,
    )
    return boto3.session.Session().client("lambda", config=config)


def _once(client: Any, function: str, payload: Any) -> tuple[bool, bool, Any, str, int, str]:
    """(ok, retryable, value, error, billed_ms, log) of one invocation."""
    try:
        out = client.invoke(
            FunctionName=function, Payload=json.dumps(payload).encode(), LogType="Tail"
        )
    except Exception as exc:  # botocore's ClientError, a transport error
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        retryable = code in _THROTTLES or status in (429, 500, 502, 503, 504) or not code
        return False, retryable, None, f"{type(exc).__name__}: {exc}", 0, ""
    log = base64.b64decode(out.get("LogResult", "") or b"").decode("utf-8", "replace")
    billed = sum(int(m) for m in _BILLED.findall(log))
    raw = out["Payload"].read()
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        value = raw.decode("utf-8", "replace")
    if out.get("FunctionError"):
        why = value.get("errorMessage", "") if isinstance(value, dict) else str(value)
        return False, True, value, f"{out['FunctionError']}: {why}", billed, log
    return True, False, value, "", billed, log


def _invoke(
    client: Any, function: str, index: int, payload: Any, retries: int, backoff: float
) -> Result:
    attempt = 0
    billed_total = 0
    while True:
        attempt += 1
        ok, retryable, value, error, billed, log = _once(client, function, payload)
        billed_total += billed
        if ok or not retryable or attempt > retries:
            return Result(index, payload, ok, value, error, attempt, billed_total, log)
        time.sleep(random.uniform(0, backoff * (2 ** (attempt - 1))))


def _payloads(items: Iterable[Any], batch: int | None) -> Iterator[tuple[int, Any]]:
    if not batch:
        yield from enumerate(items)
        return
    chunk: list[Any] = []
    start = 0
    for i, item in enumerate(items):
        if not chunk:
            start = i
        chunk.append(item)
        if len(chunk) == batch:
            yield start, chunk
            chunk = []
    if chunk:
        yield start, chunk


def fan_out(
    function: str,
    items: Iterable[Any],
    *,
    concurrency: int = 100,
    retries: int = 2,
    batch: int | None = None,
    ordered: bool = True,
    backoff: float = 0.1,
    client: Any = None,
) -> Iterator[Result]:
    """Invoke ``function`` (an agent's name or a function name) once per item, or once per
    list of ``batch`` items; yield a :class:`Result` for each invocation."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    name = function_name(function)
    lam = client if client is not None else _client(concurrency)
    source = _payloads(items, batch)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fan-out") as pool:
        running: set[Future[Result]] = set()
        done: dict[int, Result] = {}
        order: deque[int] = deque()  # the indexes submitted, in order (for ordered output)
        exhausted = False
        while True:
            while not exhausted and len(running) < concurrency:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                order.append(nxt[0])
                running.add(pool.submit(_invoke, lam, name, nxt[0], nxt[1], retries, backoff))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                result = fut.result()
                if not ordered:
                    yield result
                else:
                    done[result.index] = result
            while ordered and order and order[0] in done:
                yield done.pop(order.popleft())
