"""Node agents: a locked node_modules per agent from npm ci, cached, two versions of one
package side by side, in the venv level and in the sandbox. Needs npm and its registry."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from corral.drivers.host.bwrap import find_bwrap
from tests.e2e.conftest import Project

NPM = shutil.which("npm")
pytestmark = pytest.mark.skipif(NPM is None, reason="npm is not installed: apt-get install "
                                "npm (Node agents build node_modules with npm ci)")

CJS = "console.log('cjs', require('is-number/package.json').version)\n"
ESM = """\
import isNumber from 'is-number';
import { createRequire } from 'module';
const require = createRequire(import.meta.url);
console.log('esm', require('is-number/package.json').version, isNumber(5));
"""


def package(root: Path, name: str, version: str, script: str, entry: str) -> None:
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps(
        {"name": name, "version": "1.0.0", "private": True,
         "dependencies": {"is-number": version}}))
    (root / entry).write_text(script)
    assert NPM is not None
    subprocess.run([NPM, "install", "--package-lock-only", "--no-audit", "--no-fund"],
                   cwd=root, check=True, capture_output=True, timeout=300)


def test_two_versions_side_by_side_cached_and_sandboxed(project: Project) -> None:
    package(project.root / "new", "new", "7.0.0", CJS, "index.js")
    package(project.root / "old", "old", "6.0.0", ESM, "index.mjs")
    boxed = ""
    if find_bwrap() is not None:
        package(project.root / "boxed", "new", "7.0.0", CJS, "index.js")  # same inputs
        boxed = """
          boxed:
            class: compute
            isolation: sandbox
            workdir: boxed
            node: {}
            command: node index.js
        """
    project.write(f"""
        name: nodes
        agents:
          new:
            class: compute
            workdir: new
            node: {{}}
            command: node index.js
          old:
            class: compute
            workdir: old
            node: {{package: .}}
            command: node index.mjs
        {boxed}
    """)
    config = project.corral("config").stdout
    assert "isolation: venv" in config
    project.corral("up", "-d", timeout=600)
    names = ["new.1", "old.1"] + (["boxed.1"] if boxed else [])
    rows = project.wait_for(lambda r: all(r[n]["state"] == "exited" for n in names),
                            timeout=300, what="the node agents")
    for n in names:
        assert rows[n]["exit_code"] == 0, project.records(n.split(".")[0])
    def said(agent: str) -> list[str]:  # npm's progress goes to stderr
        return [r["message"] for r in project.records(agent) if r["stream"] == "stdout"]

    assert said("new") == ["cjs 7.0.0"]
    assert said("old") == ["esm 6.0.0 true"]
    if boxed:
        assert said("boxed") == ["cjs 7.0.0"]
    trees = sorted(p for p in (project.state_dir / "cache" / "node").iterdir()
                   if not p.name.startswith("."))
    assert len(trees) == 2, "the two agents with is-number 7 share one cached tree"
    assert (project.root / "new" / "node_modules").is_symlink()
    marker = trees[0] / ".corral-node.json"
    built = marker.stat().st_mtime
    project.corral("restart", "new")
    project.wait_for(lambda r: said("new") == ["cjs 7.0.0"] * 2, what="the second run")
    assert marker.stat().st_mtime == built, "an unchanged lock file is not rebuilt"


def test_a_node_block_without_a_lock_file_is_one_clear_line(project: Project) -> None:
    (project.root / "app").mkdir()
    (project.root / "app" / "package.json").write_text('{"name": "app"}')
    project.write("""
        name: nolock
        agents:
          app: {workdir: app, node: {}, command: node index.js}
    """)
    out = project.corral("config", check=False)
    assert out.returncode == 2
    assert "agents.app.node.package: no package-lock.json in" in out.stderr
    assert "npm install --package-lock-only" in out.stderr
