"""``corral.cloud.fan_out`` against the real ``moto_server`` whose Lambda invocations really
run the handler in a container (``aws_lambda_account``): every result is checked against the
item it came from; a failing item comes back with its payload after its retries."""

from __future__ import annotations

import hashlib

import pytest

from corral.cloud import fan_out
from tests.integration.test_lambda_runtime import _deployer, _zip
from tests.support import moto

N = 60  # each invocation is one container run on this 2-core machine


@pytest.fixture(scope="module")
def square(aws_lambda_account: moto.Account) -> object:
    lam = _deployer(aws_lambda_account)
    lam.create_function(
        FunctionName="fan-square",
        Runtime="python3.11",
        Role=moto.DEPLOYER,
        Handler="app.handle",
        Code={"ZipFile": _zip()},
        Timeout=30,
    )
    return lam


def test_results_match_their_items_in_order(square: object) -> None:
    items = [{"n": i, "fail": i % 20 == 7} for i in range(N)]
    got = list(
        fan_out("fan-square", iter(items), concurrency=8, retries=1, backoff=0.01, client=square)
    )
    assert [r.index for r in got] == list(range(N))
    for r, item in zip(got, items, strict=True):
        assert r.payload == item
        if item["fail"]:
            assert not r.ok and r.attempts == 2 and "asked to fail" in r.error
        else:
            assert r.ok and r.attempts == 1, r.error
            assert r.value["square"] == item["n"] ** 2
            assert r.value["sha"] == hashlib.sha256(str(item["n"]).encode()).hexdigest()
            assert f"resizing {item['n']} in fan-square" in r.log


def test_as_completed_and_batches(square: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # the agent's name resolves through the environment corral gives its agents
    monkeypatch.setenv("CORRAL_FUNCTION_RESIZE", "fan-square")
    items = [{"n": i} for i in range(10)]
    got = list(fan_out("resize", items, concurrency=4, ordered=False, client=square))
    assert sorted(r.index for r in got) == list(range(10))
    assert all(r.ok and r.value["square"] == r.payload["n"] ** 2 for r in got)
    batches = list(fan_out("resize", items, concurrency=2, batch=4, client=square))
    assert [r.index for r in batches] == [0, 4, 8]
    assert [len(r.payload) for r in batches] == [4, 4, 2]
    squares = [one["square"] for r in batches for one in r.value]
    assert squares == [i * i for i in range(10)]


def test_bad_arguments_say_which() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        next(fan_out("f", [1], concurrency=0, client=object()))
