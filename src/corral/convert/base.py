"""The exporter interface: a fleet in, files and a report out. A third-party format is a class
with these members registered in the ``corral.exporters`` entry-point group (``registry``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from corral.convert.report import Report

if TYPE_CHECKING:
    from corral.manifest.spec import Manifest


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """``include_secrets``: write secret values into the output (Kubernetes Secrets, compose
    env) instead of references to where they come from; the CLI warns. ``namespace``: the
    Kubernetes namespace objects are made for (None: none written, the context's own).
    ``settings``: ``--set KEY=VALUE`` for format-specific knobs (``kustomize=true``).
    ``out_dir``: the absolute directory the bundle will be written to (None: to stdout), for
    a format whose files name each other by path (compose's generated Containerfiles)."""

    include_secrets: bool = False
    namespace: str | None = None
    out_dir: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Bundle:
    """What an export made: ``files`` maps a relative path (``/``-separated, no ``..``) to its
    text; ``executable`` names those written with mode 0755. ``stream``: the files that
    ``--out -`` prints as they are, in order, so that the output pipes into the tool that
    reads them (``| kubectl apply -f -``); None: every file. The others follow as comments."""

    report: Report
    files: dict[str, str] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    stream: list[str] | None = None


class Exporter(Protocol):
    """``name``: the format (``corral export NAME``); ``summary``: one line for ``--help``.
    ``export`` never touches the disk: the CLI writes the bundle (``output.write``)."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def export(self, manifest: Manifest, options: ExportOptions) -> Bundle: ...
