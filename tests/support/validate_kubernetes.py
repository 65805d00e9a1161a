"""Checking an exported Kubernetes directory with real validators: ``kubernetes-validate
--strict`` (the schemas it ships, unknown fields refused) for Kubernetes versions spanning
what it has, and ``kubectl kustomize`` on the kustomization. Either missing: the test is
skipped with the reason."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

# the oldest, a middle and the newest schemas kubernetes-validate ships
VERSIONS = ("1.25.0", "1.31.0", "1.37.0")


def _validator() -> str:
    found = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    if os.path.exists(found):
        return found
    other = shutil.which("kubernetes-validate")
    if other is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return other


def check_kubernetes(directory: str, versions: tuple[str, ...] = VERSIONS) -> list[str]:
    """Every manifest of ``directory`` (``manifests/*.yaml``, else ``*.yaml`` but the
    kustomization) valid for each version, and the kustomization built; the files checked."""
    files = sorted(glob.glob(os.path.join(directory, "manifests", "*.yaml"))) or sorted(
        f for f in glob.glob(os.path.join(directory, "*.yaml"))
        if os.path.basename(f) != "kustomization.yaml")
    assert files, f"no manifests in {directory}"
    tool = _validator()
    for version in versions:
        run = subprocess.run([tool, "--strict", "--quiet", "-k", version, *files],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"kubernetes {version}: {run.stdout}{run.stderr}"
    if os.path.exists(os.path.join(directory, "kustomization.yaml")):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.skip("kubectl is not installed: the kustomization is not built")
        run = subprocess.run([kubectl, "kustomize", directory], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, f"kubectl kustomize: {run.stderr}"
    return files
