"""Manifests built to break the loader: each is one ManifestError naming the problem, quickly.

The cases are issue 8's findings (fuzzing gave RecursionError, ValueError, OverflowError,
OSError, hangs past 10 s and 900 MB), kept as regressions; ``test_manifest_fuzz`` looks for
new ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from corral.errors import ManifestError
from corral.manifest import files, yamlread
from corral.manifest.loader import load, load_text

# Hostile and huge inputs must not hang or go quadratic (one did: 104 s, every name rescanned per
# problem). They take well under 3 s each on a quiet machine; the bound is this timeout, not a
# clock read in the test, which a busy machine broke (speed is bench/'s, docs/benchmarks.md)
pytestmark = pytest.mark.timeout(30)


def _bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs": each level is ``width`` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nagents: {{w: {{command: echo, env: {{X: *a{levels - 1}}}}}}}\n"


def _agent(extra: str) -> str:
    return f"agents:\n  w:\n    command: echo\n{extra}"


CASES = {
    "recursive_alias": ("agents: &r {w: {command: echo, env: *r}}\n",
                        "line 1, column 37: alias *r is inside its own anchor &r"),
    "recursive_alias_deep": ("x-a: &a [1, [2, {k: *a}]]\nagents: {w: {command: echo}}\n",
                             "alias *a is inside its own anchor &a"),
    "nested_brackets": ("agents: " + "[" * 3000 + "]" * 3000 + "\n",
                        f"nested more than {yamlread.MAX_DEPTH} levels deep"),
    "nested_mappings": ("agents: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
                        f"nested more than {yamlread.MAX_DEPTH} levels deep"),
    "billion_laughs": (_bomb(), "once its aliases are expanded (an alias bomb?)"),
    "bomb_in_extension": ("x-" + _bomb().replace("\n", "\n  ", 9).replace("a0:", ":\n  a0:", 1)
                          .split("\nagents:")[0] + "\nagents: {w: {command: echo}}\n",
                          "once its aliases are expanded"),
    "aliased_long_text": ('x-a: &a "' + "y" * 100_000 + '"\nagents: {w: {command: echo, '
                          "labels: {" + ", ".join(f"k{i}: *a" for i in range(3000)) + "}}}\n",
                          "MiB of text once its aliases are expanded (write fewer aliases"),
    "merge_bomb": ("x-0: &m0 {a: 1, b: 2, c: 3}\n"
                   + "".join(f"x-{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}\n"
                             for i in range(1, 9))
                   + "agents: {w: {command: echo}}\n", "once its aliases are expanded"),
    "replicas_5000_digits": (_agent("    replicas: " + "9" * 5000 + "\n"),
                             "line 4, column 15: a number of 5000 digits is too large"),
    "timeout_401_digits": (_agent("    stop: {timeout: 1" + "0" * 400 + "}\n"),
                           "a number of 401 digits is too large"),
    "sexagesimal_giant": (_agent("    replicas: 1" + ":0" * 60 + "\n"),
                          "this number is too large"),
    "bad_timestamp": (_agent("    env: {D: 2001-13-45}\n"),
                      "cannot read '2001-13-45' as timestamp: month must be in 1..12"),
    "bad_int_tag": (_agent("    replicas: !!int x\n"), "cannot read 'x' as int"),
    "bad_bool_tag": (_agent("    shell: !!bool maybe\n"), "cannot read 'maybe' as bool"),
    "long_workdir": (_agent("    workdir: " + "a" * 300 + "\n"),
                     "agents.w.workdir: a path component ('aaaaaaaaaaaaaaaaaaaa...') is 300 "
                     "bytes long; file names are at most 255 (NAME_MAX)"),
    "long_env_file": (_agent("    env_file: " + "a" * 300 + "\n"),
                      "agents.w.env_file[0].path: a path component"),
    "long_path": (_agent("    workdir: " + "/a" * 2100 + "\n"),
                  "agents.w.workdir: the path is 4200 bytes long; paths are at most 4095"),
    "unknown_home": (_agent("    workdir: ~nosuchuser-corral/x\n    env_file: ~nosuch/.env\n"),
                     "agents.w.env_file[0]: file not found"),
    "nul_in_command": ('agents: {w: {command: ["a\\0b"]}}\n',
                       "agents.w.command[0]: contains a NUL character"),
    "nul_in_env_key": ('agents: {w: {command: echo, env: {"A\\0B": 1}}}\n',
                       "agents.w.env.A\\x00B: the key contains a NUL character"),
    "huge_argument": ('agents: {w: {command: ["' + "x" * 140_000 + '"]}}\n',
                      "agents.w.command[0]: is 140000 bytes long; a string is at most 131071"),
    "interpolation_nesting": ("agents: {w: {command: 'echo " + "${A:-" * 3000 + "x" + "}" * 3000
                              + "'}}\n", "agents.w.command: ${...} nested more than 16 levels"),
    "regex_nesting": ("agents: {w: {command: echo, ready_log_line: '" + "(" * 2000 + ")" * 2000
                      + "'}}\n", "invalid regular expression '((((((((((((((((((((((((((((((("
                      "(((((((((': nested too deeply"),
    "regex_repetition": ("agents: {w: {command: echo, ready_log_line: 'a{99999999999}'}}\n",
                         "the repetition number is too large"),
    "env_name_with_equals": ("agents: {w: {command: echo, env: {'A=B': 1}}}\n",
                             "agents.w.env: variable name 'A=B' is not valid"),
    "env_name_empty": ("agents: {w: {command: echo, env: ['=x']}}\n",
                       "agents.w.env: variable name '' is not valid"),
    "digits_in_a_string": ("agents: {w: {command: echo, replicas: '" + "9" * 5000 + "'}}\n",
                           "agents.w.replicas: unable to parse input string as an integer"),
    "control_character": ("agents: {w: {command: \"echo\x07\"}}\n",
                          "invalid YAML: unacceptable character #x0007"),
}


@pytest.mark.parametrize("name", CASES)
def test_hostile_manifest_is_one_clear_error(name: str, tmp_path: Path) -> None:
    text, expected = CASES[name]
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    message = str(caught.value)
    assert expected in message
    assert all(line.isprintable() for line in message.split("\n"))


YAML_LEVEL = [name for name in CASES if name.startswith(("recursive", "nested", "billion",
                                                          "merge", "replicas", "timeout",
                                                          "sexagesimal", "bad_"))]


@pytest.mark.skipif(yamlread._FastLoader is None, reason="PyYAML has no libyaml here")
@pytest.mark.parametrize("name", YAML_LEVEL)
def test_libyaml_and_pyyaml_hold_the_same_bounds(name: str) -> None:
    text = CASES[name][0]
    problems = []
    for load_yaml in (lambda: yamlread._load(yamlread.BoundedLoader(text)),
                      lambda: yamlread.load(text)):  # libyaml's events, PyYAML on its errors
        with pytest.raises(yaml.MarkedYAMLError) as caught:
            load_yaml()
        mark = caught.value.problem_mark
        assert mark is not None
        problems.append((caught.value.problem, mark.line, mark.column))
    assert problems[0] == problems[1]


def test_a_syntax_error_keeps_pyyamls_message(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_text("agents:\n  w:\n    command: x\n   env: {}\n", project_dir=tmp_path)
    assert "expected <block end>, but found '<block mapping start>'" in str(caught.value)


def test_a_billion_laughs_stops_at_the_alias_that_crosses_the_budget(tmp_path: Path) -> None:
    with pytest.raises(ManifestError):
        load_text(_bomb(levels=30, width=30), project_dir=tmp_path, environ={})


def test_aliases_within_the_budget_still_load(tmp_path: Path) -> None:
    text = ("x-env: &env {A: '1', B: '2'}\nagents:\n"
            + "".join(f"  a{i}: {{command: echo, env: *env}}\n" for i in range(50)))
    manifest = load_text(text, project_dir=tmp_path, environ={})
    assert manifest.agents["a49"].env == {"A": "1", "B": "2"}


def test_nesting_up_to_the_limit_loads(tmp_path: Path) -> None:
    deep = "[" * (yamlread.MAX_DEPTH - 4) + "]" * (yamlread.MAX_DEPTH - 4)
    text = f"x-deep: {deep}\nagents: {{w: {{command: echo}}}}\n"
    assert "w" in load_text(text, project_dir=tmp_path, environ={}).agents


def _expect_file_error(path: Path | str, fragment: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load(path, environ={})
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_not_utf8_names_the_byte(tmp_path: Path) -> None:
    (tmp_path / "corral.yaml").write_bytes(b"agents:\n  w:\n    command: echo \xff\xfe\n")
    _expect_file_error(tmp_path / "corral.yaml",
                       "line 3, column 19: byte 0xff is not UTF-8 (save the file as UTF-8)")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "corral.yaml")  # no writer: a plain open() would block for ever
    _expect_file_error(tmp_path / "corral.yaml", "a FIFO, not a regular file")


def test_a_device_is_refused_without_reading_it() -> None:
    _expect_file_error("/dev/zero", "a character device, not a regular file")


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    with open(tmp_path / "corral.yaml", "w") as f:
        f.write("agents: {w: {command: echo}}\n")
        f.write(("#" * 100 + "\n") * (files.MAX_BYTES // 101 + 10))
    _expect_file_error(tmp_path / "corral.yaml", "larger than 1024 KiB, the most corral reads")


def test_an_oversized_env_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "big.env").write_text("A=1\n" * (files.MAX_BYTES // 4 + 1))
    (tmp_path / "corral.yaml").write_text(_agent("    env_file: big.env\n"))
    _expect_file_error(tmp_path / "corral.yaml", "agents.w.env_file[0]: ")


def test_problems_are_capped_in_the_message(tmp_path: Path) -> None:
    text = "agents:\n" + "".join(f"  a{i}: {{command: echo, workdir: {'b' * 300}}}\n"
                                 for i in range(200))
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    assert len(caught.value.problems) == 200
    lines = str(caught.value).split("\n")
    assert len(lines) == 1 + ManifestError.SHOWN + 1
    assert lines[-1] == f"  ... and {200 - ManifestError.SHOWN} more (fix these first)"


def test_newlines_and_escapes_in_keys_cannot_forge_lines(tmp_path: Path) -> None:
    text = 'agents: {w: {command: echo, "a\\nagents.x: fine\\u001b[2J": 1}}\n'
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert "agents.w.a\\nagents.x: fine\\x1b[2J: unknown key" in message


def test_twenty_thousand_unknown_keys_are_linear_and_capped(tmp_path: Path) -> None:
    from corral.manifest.hints import MAX_UNKNOWN

    keys = "".join(f"    k{i}: 1\n" for i in range(20_000))
    with pytest.raises(ManifestError) as caught:
        load_text(_agent(keys + "    comand: x\n"), project_dir=tmp_path, environ={})
    problems = caught.value.problems
    assert len(problems) == MAX_UNKNOWN + 1  # the first 20 and one line counting the rest
    assert problems[0] == "agents.w.k0: unknown key (allowed here: description, class, " \
        "isolation, command, shell, workdir, env, env_file, inherit_env, replicas, depends_on, " \
        "readiness, liveness, ready_log_line, restart, stop, schedule, venv, node, vm, " \
        "container, fake, ray, resources, labels, trust, user, network, port, placement, " \
        "volumes, secrets, needs, on, metrics, aws, artifacts, inputs, publishes)"
    assert problems[-1].startswith("agents.w: and 19981 more unknown keys (allowed here: ")


def test_twenty_thousand_duplicate_free_keys_parse_linearly(tmp_path: Path) -> None:
    text = "x-many:\n" + "".join(f"  k{i}: 1\n" for i in range(20_000)) + \
        "agents: {w: {command: echo}}\n"
    load_text(text, project_dir=tmp_path, environ={})


def test_a_dependency_chain_of_3000_agents_loads(tmp_path: Path) -> None:
    text = "agents:\n" + "".join(f"  a{i}: {{command: echo, depends_on: [a{i + 1}]}}\n"
                                 for i in range(3000)) + "  a3000: {command: echo}\n"
    manifest = load_text(text, project_dir=tmp_path, environ={})
    assert len(manifest.agents) == 3001


def test_thousands_of_unknown_dependencies_are_hinted_only_first(tmp_path: Path) -> None:
    text = "agents:\n" + "".join(f"  a{i}: {{command: echo, depends_on: [b{i}]}}\n"
                                 for i in range(3000))
    with pytest.raises(ManifestError) as caught:
        load_text(text, project_dir=tmp_path, environ={})
    problems = caught.value.problems
    assert len(problems) == 3000
    assert problems[0].startswith("agents.a0.depends_on.b0: unknown agent (agents defined: a1, ")
    assert problems[0].endswith(", ...)")
    assert problems[-1] == "agents.a2999.depends_on.b2999: unknown agent"


def test_an_unterminated_quote_atop_a_long_env_file_is_linear(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('A="' + "x\n" * 200_000)
    with pytest.raises(ManifestError) as caught:
        load_text("agents: {w: {command: echo}}\n", project_dir=tmp_path, environ={})
    assert "line 1: unterminated quote" in str(caught.value)


def test_substituted_text_is_bounded_in_all(tmp_path: Path) -> None:
    labels = ", ".join(f"k{i}: 'x${{A}}'" for i in range(2000))  # each a new 100 KB string
    with pytest.raises(ManifestError) as caught:
        load_text(f"agents: {{w: {{command: echo, labels: {{{labels}}}}}}}\n",
                  project_dir=tmp_path, environ={"A": "x" * 100_000})
    assert caught.value.problems == [
        "agents.w.labels.k41: variables substitute more than 4 MiB of text in all "
        "(${A} is 100000 characters)"]
