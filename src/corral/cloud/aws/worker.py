"""``python -m corral.cloud.aws.worker``: one call to AWS for the daemon, then exit.

Reads one JSON request on stdin (``op``: ``grant``, ``upload``, ``download`` or
``publish``, with the fleet's ``cloud.aws`` and the agent's block or grant), writes
``{"result": ...}`` or ``{"error": "one line"}`` on stdout. boto3 lives here only
(``provider`` says why).
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any


def _run(request: dict[str, Any]) -> Any:
    from corral.cloud.aws import s3
    from corral.cloud.aws.sts import Sts

    fleet = SimpleNamespace(**request["fleet"])
    op = request["op"]
    if op == "grant":
        return Sts(fleet, request["project"]).grant(
            request["agent"], request["instance"], SimpleNamespace(**request["access"]))
    if op == "publish":  # the fleet's events, with corral's own identity
        from corral.cloud.aws import messaging

        sts = Sts(fleet, request["project"])
        return {"sent": messaging.send(sts.session(), sts.client, request["events"],
                                       sqs=request.get("sqs"), sns=request.get("sns"),
                                       region=fleet.region or "us-east-1")}
    client = s3.client(SimpleNamespace(document=request["grant"]), fleet)
    if op == "upload":
        moved = s3.upload(client, request["url"], request["workdir"], request["paths"],
                          request["index"], where=request["where"])
    elif op == "download":
        moved = s3.download(client, request["url"], request["workdir"], request["to"],
                            request["index"], uid=request["uid"], gid=request["gid"],
                            where=request["where"])
    else:
        raise ValueError(f"unknown op {op!r}")
    return {"files": moved.files, "bytes": moved.bytes, "kept": moved.kept}


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        from corral.cloud.provider import CloudError
    except ImportError as exc:  # pragma: no cover - corral itself is importable here
        print(json.dumps({"error": f"corral is not importable: {exc}"}))
        return 0
    try:
        out = {"result": _run(request)}
    except CloudError as exc:
        out = {"error": str(exc)}
    except ImportError as exc:
        out = {"error": f"cloud.aws: its SDK is not installed ({exc.name}): "
                        "pip install 'corral[aws]'"}
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
