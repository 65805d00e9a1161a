"""Issue 13's upload bar: an agent's artifacts (1,000 files, 1 GB by default) going up the way
corral sends them (``corral.cloud.aws.s3.upload``: 8 files at a time, parts past 8 MiB,
SHA-256 checksums, the resume index kept) against boto3's own ``upload_file`` loop over the
same files, with the same temporary credentials, to a real moto_server on 127.0.0.1.

    python bench/cloud_upload.py                    # 1,000 files, 1 GB
    python bench/cloud_upload.py --files 1000 --mb 200

Each side is timed twice, alternating, each to a prefix of its own; the best of each is shown.
moto keeps what it is sent (in memory, past a size in temp files): the bytes go through its
HTTP server and checksum code like any S3 request, so the figure is corral's work plus the
endpoint's, on this machine's 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support.moto import DATA, READER, REGION, moto_server  # noqa: E402

from corral.cloud.aws import s3 as transfer  # noqa: E402


def _client(account: object) -> object:
    import boto3

    sts = boto3.client("sts", endpoint_url=account.endpoint, region_name=REGION,  # type: ignore[attr-defined]
                       aws_access_key_id=account.access_key,  # type: ignore[attr-defined]
                       aws_secret_access_key=account.secret_key)  # type: ignore[attr-defined]
    c = sts.assume_role(RoleArn=READER, RoleSessionName="bench")["Credentials"]
    doc = {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
           "SessionToken": c["SessionToken"]}

    class Fleet:
        region = REGION
        endpoint_url = account.endpoint  # type: ignore[attr-defined]

    class Grant:
        document = doc

    return transfer.client(Grant(), Fleet())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=int, default=1024, help="total size")
    args = parser.parse_args()
    size = args.mb * 1024 * 1024 // args.files
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp)) as account:
        work = Path(tmp) / "work"
        (work / "out").mkdir(parents=True)
        chunk = os.urandom(size)
        for i in range(args.files):
            (work / "out" / f"f{i:05d}.bin").write_bytes(chunk[i % 256:] + chunk[:i % 256])
        s3 = _client(account)
        best = {"corral": float("inf"), "boto3 loop": float("inf")}
        for rnd in range(2):
            t0 = time.perf_counter()
            index = Path(tmp) / f"index-{rnd}.json"
            moved = transfer.upload(s3, f"s3://{DATA}/bench/corral-{rnd}/", str(work),
                                    ["out/*"], str(index), where="bench")
            best["corral"] = min(best["corral"], time.perf_counter() - t0)
            assert moved.files == args.files, moved
            t0 = time.perf_counter()
            for name in sorted(os.listdir(work / "out")):
                s3.upload_file(str(work / "out" / name), DATA,  # type: ignore[attr-defined]
                               f"bench/boto3-{rnd}/out/{name}")
            best["boto3 loop"] = min(best["boto3 loop"], time.perf_counter() - t0)
    total = args.mb
    for name, secs in best.items():
        print(f"{name:>10}: {args.files} files, {total} MB in {secs:.2f} s "
              f"({total / secs:.1f} MB/s)")
    print(f"corral / boto3 loop time: {best['corral'] / best['boto3 loop']:.2f}x "
          "(bar: at most 1.00x)")


if __name__ == "__main__":
    main()
