"""Images from registries: ``container.pull_policy`` (compose's names) and what a pull shows.

- ``missing`` (the default): pulled when the engine does not have it;
- ``always``: pulled at every ``corral up``, even when present (``ContainerDriver.refresh``),
  so a tag that moved is followed: its instances are recreated on the new image, as
  compose's ``up`` does; ``corral pull`` pulls too;
- ``never``: never pulled; a missing image is a one-line error naming it and the fix.

The pull is the engine's, with the engine's own credentials (``credentials``): through its
API (``POST /images/create``, streamed progress) or its CLI (``pull``), whichever transport
the driver uses. Progress is one line per layer and step (``a1b2c3: Pull complete``), not
every byte count.
"""

from __future__ import annotations

from corral.drivers.container.transport.base import Ops, Progress
from corral.errors import CorralError


async def ensure(ops: Ops, ref: str, policy: str, progress: Progress | None = None) -> bool:
    """Make ``ref`` present as ``policy`` says. True: it was pulled."""
    if policy != "always" and await ops.image_exists(ref):
        return False
    name = ops.engine.name
    if policy == "never":
        raise CorralError(f"image {ref} is not in {name} and pull_policy is never",
                          f"pull it first (`{name} pull {ref}`), or set "
                          "container.pull_policy: missing")
    if progress is not None:
        progress(f"pulling {ref} ({name} {ops.via})")
    try:
        await ops.pull(ref, progress)
    except CorralError as exc:
        if policy == "always":
            raise
        raise CorralError(f"image {ref} does not exist in {name}; {exc.problem}",
                          f"{exc.fix}, or build or load it ({name} images lists what "
                          "exists)") from None
    return True
