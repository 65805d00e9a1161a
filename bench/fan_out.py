"""Bar of issue 13 part 3: ``corral.cloud.fan_out`` of N small items against a hand-written
boto3 ``ThreadPoolExecutor`` loop at the same concurrency, on the same function.

A real moto_server on 127.0.0.1 (``tests/support/moto.py``) whose Lambda invocations really
run the handler in a container of the runtime image ``tests/support/lambda_runtime.py``
builds (on the docker daemon ``tests/support/engines.py`` starts): each invocation is one
container run, so this measures the client's scheduling on top of a slow executor. The two
runs alternate (``--rounds``) so neither gets a warmer daemon.

    PYTHONPATH=src .venv/bin/python bench/fan_out.py --items 1000 --concurrency 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_lambda_runtime import _deployer, _zip
from tests.support import engines, lambda_runtime, moto

from corral.cloud import fan_out


def _hand_written(lam: Any, items: list[Any], concurrency: int) -> list[Any]:
    def one(item: Any) -> Any:
        out = lam.invoke(
            FunctionName="bench-square", Payload=json.dumps(item).encode(), LogType="Tail"
        )
        return json.loads(out["Payload"].read())

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, items))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    items = [{"n": i} for i in range(a.items)]
    with engines.docker() as engine, tempfile.TemporaryDirectory() as tmp:
        image = lambda_runtime.build(engine)
        with moto.moto_server(Path(tmp), lambda_image=image) as account:
            lam = _deployer(account, pool=a.concurrency)
            lam.create_function(
                FunctionName="bench-square",
                Runtime="python3.11",
                Role=moto.DEPLOYER,
                Handler="app.handle",
                Code={"ZipFile": _zip()},
                Timeout=60,
            )
            ours, theirs = [], []
            for _ in range(a.rounds):
                t = time.monotonic()
                got = list(
                    fan_out("bench-square", items, concurrency=a.concurrency, retries=0, client=lam)
                )
                ours.append(time.monotonic() - t)
                assert all(r.ok and r.value["square"] == r.index**2 for r in got)
                t = time.monotonic()
                values = _hand_written(lam, items, a.concurrency)
                theirs.append(time.monotonic() - t)
                assert [v["square"] for v in values] == [i * i for i in range(a.items)]
    o, h = min(ours), min(theirs)
    print(
        f"{a.items} items, concurrency {a.concurrency}: fan_out {o:.1f} s, "
        f"ThreadPoolExecutor loop {h:.1f} s, ratio {o / h:.2f} (<= 1.0 meets the bar)"
    )


if __name__ == "__main__":
    main()
