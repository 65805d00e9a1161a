"""An agent's files to and from S3, moved by the daemon with the agent's own credentials.

The agent's workdir is its own between two runs: it may plant a link (``out -> /etc``) for a
daemon running as root to upload what the link names, or to write through. So every file is
reached from the workdir by directory descriptors, never following a link (``os.fwalk`` for
uploads, ``O_NOFOLLOW`` opens relative to each parent's descriptor for downloads), and a
download lands in a new file renamed into place.

Uploads go with multipart past 8 MiB (boto3's transfer manager) and a SHA-256 checksum S3
checks on arrival. Each side keeps an index in the instance's run dir: what was uploaded
(size and mtime, with ``pending`` while an upload goes on, so a restarted daemon finishes
it) and what was downloaded (each object's ETag), so only what changed moves again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions as errors
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from corral.cloud.provider import CloudError

_TRANSFER = TransferConfig(multipart_threshold=8 * 1024 * 1024, max_concurrency=4)
_CONFIG = Config(connect_timeout=3, read_timeout=60, max_pool_connections=48,
                 retries={"max_attempts": 3, "mode": "standard"})
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Moved:
    files: int  # moved now
    bytes: int
    kept: int  # already there, unchanged


def client(grant: Any, fleet: Any) -> Any:
    """An S3 client on the agent's grant (``provider.Grant`` of the aws provider)."""
    doc = grant.document
    session = boto3.session.Session(aws_access_key_id=doc["AccessKeyId"],
                                    aws_secret_access_key=doc["SecretAccessKey"],
                                    aws_session_token=doc["SessionToken"],
                                    region_name=fleet.region or "us-east-1")
    return session.client("s3", endpoint_url=fleet.endpoint_url, config=_CONFIG)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob: ``*`` within a name, ``**`` across dirs (``out/**``: all under out)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _index(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            found: dict[str, Any] = json.load(f)
            return found
    except (OSError, ValueError):
        return {}


def _save(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _problem(where: str, url: str, exc: Exception) -> CloudError:
    if isinstance(exc, errors.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "error")
        return CloudError(f"{where}: {url}: {code}"
                          + (f": {err.get('Message', '')[:120]}" if err.get("Message") else "")
                          + " (the agent's role and policy must allow it)")
    return CloudError(f"{where}: {url}: {type(exc).__name__} (check cloud.aws.endpoint_url "
                      "and the network)")


# --- up ------------------------------------------------------------------------------------


def _matching(root_fd: int, patterns: Sequence[str]) -> Iterator[tuple[str, int, os.stat_result]]:
    """(relative path, dir fd, stat) of every regular file under the root matching one of
    ``patterns``, links never followed (a linked dir is not entered, a linked file skipped)."""
    regexes = [glob_regex(p) for p in patterns]
    for top, _dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in files:
            rel = os.path.normpath(os.path.join(top, name))
            if not any(r.fullmatch(rel) for r in regexes):
                continue
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield rel, dir_fd, st


FILES_AT_ONCE = 8  # files in flight (each may go in parts, _TRANSFER's own threads)
SAVE_EVERY = 1.0  # seconds between index saves: a resume re-sends at most that much


def upload(s3: Any, url: str, workdir: str, patterns: Sequence[str], index_path: str, *,
           where: str) -> Moved:
    """The matching files of ``workdir`` under ``url`` (a prefix), those changed since the
    last upload only, ``FILES_AT_ONCE`` at a time; the index says which are done, so a
    restart resumes (a file sent but not yet indexed goes again: the same bytes)."""
    import threading
    import time
    from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

    bucket, prefix = url.removeprefix("s3://").partition("/")[::2]
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    done = _index(index_path)
    uploaded: dict[str, list[int]] = done.get("files", {})
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(FILES_AT_ONCE * 4)  # open descriptors waiting
    sent: list[int] = []  # the sizes of the files sent
    saved = [time.monotonic()]

    def send(fd: int, key: str, mark: list[int]) -> None:
        try:
            with os.fdopen(fd, "rb") as f:
                s3.upload_fileobj(f, bucket, key, Config=_TRANSFER,
                                  ExtraArgs={"ChecksumAlgorithm": "SHA256"})
        except (errors.BotoCoreError, errors.ClientError,
                boto3.exceptions.S3UploadFailedError) as exc:
            raise _problem(where, f"s3://{bucket}/{key}", exc) from None
        finally:
            slots.release()
        with lock:
            uploaded[key] = mark
            sent.append(mark[0])
            if time.monotonic() - saved[0] >= SAVE_EVERY:
                _save(index_path, {**done, "files": dict(uploaded)})
                saved[0] = time.monotonic()

    kept = 0
    jobs: list[tuple[Future[None], int]] = []
    root_fd = os.open(workdir, _DIR)
    try:
        with ThreadPoolExecutor(FILES_AT_ONCE) as pool:
            for rel, dir_fd, st in _matching(root_fd, patterns):  # dir_fd lives till the next
                mark = [st.st_size, st.st_mtime_ns]
                key = prefix + rel
                if uploaded.get(key) == mark:
                    kept += 1
                    continue
                if any(job.done() and job.exception() for job, _ in jobs[-FILES_AT_ONCE:]):
                    break  # one failed: the rest waits for the next upload
                slots.acquire()
                try:
                    fd = os.open(os.path.basename(rel),
                                 os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                except OSError:
                    slots.release()
                    continue  # gone, or a link put there since the walk: not sent
                jobs.append((pool.submit(send, fd, key, mark), fd))
            wait([job for job, _ in jobs], return_when=FIRST_EXCEPTION)
            failed = next((job.exception() for job, _ in jobs
                           if job.done() and not job.cancelled() and job.exception()), None)
            if failed is not None:
                for job, fd in jobs:
                    if job.cancel():  # never ran: its descriptor is still open here
                        os.close(fd)
                        slots.release()
                raise failed
    finally:
        os.close(root_fd)
        with lock:
            _save(index_path, {**done, "files": dict(uploaded)})
    return Moved(len(sent), sum(sent), kept)


# --- down ----------------------------------------------------------------------------------


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _open_dir(parent: int, name: str, uid: int, gid: int) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    return os.open(name, _DIR, dir_fd=parent)  # a link in its place: ELOOP, refused


def _dir_of(root_fd: int, parts: Sequence[str], uid: int, gid: int) -> int:
    fd = os.dup(root_fd)
    for part in parts:
        inner = _open_dir(fd, part, uid, gid)
        os.close(fd)
        fd = inner
    return fd


def download(s3: Any, url: str, workdir: str, to: str, index_path: str, *, uid: int, gid: int,
             where: str) -> Moved:
    """The objects under ``url`` into ``workdir/to``, those whose ETag changed (or whose
    file is gone) only; none at all is a ``CloudError`` (the agent would run without its
    input)."""
    bucket, prefix = url.removeprefix("s3://").partition("/")[::2]
    had = _index(index_path).get("objects", {})
    now: dict[str, str] = {}
    moved = size = kept = 0
    try:
        objects = [o for o in _objects(s3, bucket, prefix) if not o["Key"].endswith("/")]
    except (errors.BotoCoreError, errors.ClientError) as exc:
        raise _problem(where, url, exc) from None
    if not objects:
        raise CloudError(f"{where}: {url} holds no objects (upload the input there, or fix "
                         "inputs.from)")
    root_fd = os.open(workdir, _DIR)
    try:
        dest = _dir_of(root_fd, [p for p in to.split("/") if p not in ("", ".")], uid, gid)
    except OSError as exc:
        os.close(root_fd)
        raise CloudError(f"{where}: cannot make {to} in {workdir}: {exc.strerror} (a link or "
                         "a file in its place?)") from None
    try:
        for obj in objects:
            # an object named by the whole URL lands under its own name
            rel = obj["Key"][len(prefix):].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
            parts = [p for p in rel.split("/") if p]
            if not parts or ".." in parts:
                continue  # a key that would climb out of the dir is not written
            tag = str(obj.get("ETag", ""))
            try:
                parent = _dir_of(dest, parts[:-1], uid, gid)
            except OSError as exc:
                raise CloudError(f"{where}: cannot make the dir of {rel} in {to}: "
                                 f"{exc.strerror} (a link or a file in its place?)") from None
            try:
                present = _exists(parent, parts[-1])
                if had.get(obj["Key"]) == tag and present:
                    kept += 1
                    now[obj["Key"]] = tag
                    continue
                _fetch(s3, bucket, obj["Key"], parent, parts[-1], uid, gid, where)
            finally:
                os.close(parent)
            now[obj["Key"]] = tag
            moved += 1
            size += int(obj.get("Size", 0))
    finally:
        os.close(dest)
        os.close(root_fd)
    _save(index_path, {"objects": now})
    return Moved(moved, size, kept)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _fetch(s3: Any, bucket: str, key: str, dir_fd: int, name: str, uid: int, gid: int,
           where: str) -> None:
    tmp = f".{name}.corral-part"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            s3.download_fileobj(bucket, key, f, Config=_TRANSFER)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.chown(tmp, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # a link there: replaced
    except (errors.BotoCoreError, errors.ClientError) as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise _problem(where, f"s3://{bucket}/{key}", exc) from None
