"""Secrets: where their values come from, how an agent gets them, and where they never go.

A secret's value is read when an instance starts (so a rotated password reaches the next
start), from one source: an environment variable of corral's, a file, a key of a ``.env``
file, or the output of a command (a password manager's CLI). An agent gets only the secrets it
lists: as environment variables, or as files of mode 0400 in a private directory on a tmpfs
(``/run/secrets/NAME`` inside sandboxes and containers). Values are handed to the log sink for
redaction and never written to the state store, the API or the events.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# subprocess and shlex are imported where a command runs: the daemon imports this module for
# every fleet, and most fleets read no secret from a command (its memory at rest: S2)


class SecretError(Exception):
    """One line naming the secret, the problem and the fix."""


@dataclass(frozen=True, slots=True)
class Source:
    """Exactly one of ``environment``, ``file``, ``env_file`` (with ``key``), ``command``."""

    name: str
    environment: str | None = None
    file: str | None = None  # absolute
    env_file: str | None = None  # absolute
    key: str | None = None  # the variable in env_file (default: the secret's name)
    command: tuple[str, ...] | None = None
    timeout: float = 10.0


def _read_env_file(path: str, key: str) -> str | None:
    from corral.manifest.dotenv import parse_dotenv

    with open(path, encoding="utf-8") as f:
        values, problems = parse_dotenv(f.read())
    if key not in values and problems:
        raise ValueError(problems[0])
    return values.get(key)


def resolve(source: Source, environ: Mapping[str, str]) -> str:
    """The secret's value, or ``SecretError``. A trailing newline (from ``echo`` or an editor)
    is not part of a value read from a file or a command."""
    where = f"secret {source.name}"
    if source.environment is not None:
        value = environ.get(source.environment)
        if value is None:
            raise SecretError(f"{where}: environment variable {source.environment} is not set "
                              f"(export {source.environment}=... before 'corral up')")
        return value
    if source.file is not None:
        try:
            with open(source.file, encoding="utf-8") as f:
                return f.read().removesuffix("\n")
        except FileNotFoundError:
            raise SecretError(f"{where}: file {source.file} does not exist "
                              f"(create it or fix secrets.{source.name}.file)") from None
        except OSError as exc:
            raise SecretError(f"{where}: cannot read {source.file}: {exc.strerror} "
                              "(fix its permissions)") from None
    if source.env_file is not None:
        key = source.key or source.name
        try:
            value = _read_env_file(source.env_file, key)
        except FileNotFoundError:
            raise SecretError(f"{where}: env file {source.env_file} does not exist "
                              f"(create it or fix secrets.{source.name}.env_file)") from None
        except (OSError, ValueError) as exc:
            raise SecretError(f"{where}: cannot read {source.env_file}: {exc}") from None
        if value is None:
            raise SecretError(f"{where}: {source.env_file} has no {key}= line "
                              f"(add it or set secrets.{source.name}.key)")
        return value
    if source.command is not None:
        return _run(source, where, environ)
    raise SecretError(f"{where}: no source (set one of environment, file, env_file, command)")


def _run(source: Source, where: str, environ: Mapping[str, str]) -> str:
    import shlex
    import subprocess

    assert source.command is not None
    shown = shlex.join(source.command)
    try:
        proc = subprocess.run(list(source.command), capture_output=True, text=True,
                              timeout=source.timeout, env=dict(environ),
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SecretError(f"{where}: command not found: {source.command[0]} "
                          f"(install it or fix secrets.{source.name}.command)") from None
    except subprocess.TimeoutExpired:
        raise SecretError(f"{where}: `{shown}` did not finish in {source.timeout:g}s "
                          "(is it waiting for a password prompt? unlock it first)") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
        raise SecretError(f"{where}: `{shown}` exited {proc.returncode}"
                          + (f": {tail}" if tail else "") + " (run it by hand to see why)")
    value = proc.stdout.removesuffix("\n")
    if not value:
        raise SecretError(f"{where}: `{shown}` printed nothing (it must print the value)")
    return value


def resolve_all(sources: Sequence[Source], environ: Mapping[str, str]
                ) -> tuple[dict[str, str], list[str]]:
    """Every value that could be read, and one line per secret that could not."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for source in sources:
        try:
            values[source.name] = resolve(source, environ)
        except SecretError as exc:
            problems.append(str(exc))
    return values, problems


# --- files --------------------------------------------------------------------------------


def _tmpfs_mounts() -> list[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            return [fields[1] for fields in (line.split() for line in f)
                    if len(fields) > 2 and fields[2] == "tmpfs"]
    except OSError:
        return []


def secrets_root(uid: int | None = None) -> str | None:
    """A tmpfs dir of this user's where secret files never touch a disk: ``/run/user/UID``
    when it is a tmpfs, else ``/dev/shm``. None when neither is (``corral doctor`` says so)."""
    uid = os.getuid() if uid is None else uid
    mounts = set(_tmpfs_mounts())
    for candidate in (f"/run/user/{uid}", "/dev/shm"):
        if candidate in mounts and os.access(candidate, os.W_OK):
            return candidate
    return None


def write_files(directory: str, values: Mapping[str, str]) -> None:
    """One file per secret, mode 0400, in ``directory`` (0700, emptied first), made without
    following a link planted in its place (``corral.ownership.privdir``; the keeper builds its whole
    path that way, under a tmpfs others may write)."""
    from corral.ownership import privdir

    os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    fd = privdir.open_dir(None, directory, mode=0o700, uid=os.geteuid(), gid=os.getegid(),
                          shown=directory)
    try:
        privdir.empty(fd)
        privdir.write_files(fd, values, uid=os.geteuid(), gid=os.getegid())
    finally:
        os.close(fd)


def remove_files(directory: str, *, keep_dir: bool = False) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(directory):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, entry))
        if not keep_dir:
            os.rmdir(directory)


# --- least privilege: names that look like credentials ---------------------------------------
# (agents start from an allow-list, corral.environ; a glob of inherit_env never matches these)

_CREDENTIAL_NAME = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "ACCESS_KEY",
                    "PRIVATE_KEY", "CREDENTIAL", "PASSPHRASE")
# whole words of a name (split at '_' and digits): SA_PW, DB_PASS, MY_APP_KEY, AUTH, a DSN
# (its URL carries the password), a session or cookie
_CREDENTIAL_WORD = frozenset({"PW", "PWD", "PASS", "PASSWD", "KEY", "AUTH", "CRED", "CREDS",
                              "DSN", "SESSION", "COOKIE", "SIG", "SIGNATURE", "JWT", "OTP",
                              "PIN", "SALT", "HMAC"})
_CREDENTIAL_EXACT = frozenset({"AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS",
                               "AZURE_CLIENT_ID", "SSH_AUTH_SOCK"})
_NOT_CREDENTIAL = frozenset({"PWD", "OLDPWD"})  # the shell's working directories


def looks_like_credential(name: str) -> bool:
    upper = name.upper()
    if upper in _NOT_CREDENTIAL:
        return False
    if upper in _CREDENTIAL_EXACT or any(word in upper for word in _CREDENTIAL_NAME):
        return True
    import re

    return any(w in _CREDENTIAL_WORD for w in re.split(r"[_\W\d]+", upper))


# --- doctor ---------------------------------------------------------------------------------

# Long-lived keys of cloud administrators: a leak is the whole account.
_LONG_LIVED = {
    "AWS_ACCESS_KEY_ID": "an AWS access key (use a profile with STS AssumeRole instead)",
    "AWS_SECRET_ACCESS_KEY": "an AWS secret key (use temporary credentials from STS)",
    "GOOGLE_APPLICATION_CREDENTIALS": "a GCP service-account key file (use workload identity "
                                      "or short-lived tokens)",
    "AZURE_CLIENT_SECRET": "an Azure client secret (use a managed identity)",
}


def cloud_key_warnings(environ: Mapping[str, str]) -> list[str]:
    out = []
    for var, what in _LONG_LIVED.items():
        if environ.get(var) and not (var.startswith("AWS_") and environ.get("AWS_SESSION_TOKEN")):
            out.append(f"{var} is set: {what}")
    return out


def world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o004)
    except OSError:
        return False


def git_ignored(path: str) -> bool | None:
    """True/False when ``path`` is in a git work tree; None when it is not (or no git)."""
    import subprocess

    directory = os.path.dirname(os.path.abspath(path))
    try:
        inside = subprocess.run(["git", "-C", directory, "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, timeout=10)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        check = subprocess.run(["git", "-C", directory, "check-ignore", "-q", path],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return check.returncode == 0
