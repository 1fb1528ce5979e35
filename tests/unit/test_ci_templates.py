"""The CI templates under ci/: each passes its platform's checker (actionlint with shellcheck
for the GitHub workflow; GitLab's JSON schema and shellcheck for the GitLab file), and every
harness command line in them parses with the harness's own parser, so the templates cannot
drift from the CLI. Everything here runs offline."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from harness.cli import build_parser
from harness.errors import UsageError
from harness.paths import PROJECT_ROOT

GITHUB = PROJECT_ROOT / "ci/github/hmm.yml"
GITLAB = PROJECT_ROOT / "ci/gitlab/hmm.gitlab-ci.yml"
# The dev extras (actionlint, check-jsonschema) install their commands beside the Python
# that runs the tests: the venv's bin/, not resolved through its symlink.
VENV_BIN = Path(sys.executable).parent
# Any download the checkers tried would go to a closed port and fail the test.
OFFLINE = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": ""}


def venv_tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run ci/bootstrap, which installs the dev extras")
    return str(path)


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck is missing: run ci/bootstrap, which installs it")
    return path


def check(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=OFFLINE, timeout=120,
                          check=False)


def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    return check([venv_tool("actionlint"), "-no-color", f"-shellcheck={shellcheck()}",
                  "-pyflakes=", str(workflow)])


def gitlab_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return check([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci",
                  str(path)])


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


# --- the checkers --------------------------------------------------------------------------

def test_the_github_workflow_passes_actionlint() -> None:
    result = actionlint(GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr


def broken_copy(template: Path, old: str, new: str, directory: Path) -> Path:
    """A copy of `template` with `old` (which must be there) replaced by `new`."""
    text = template.read_text()
    assert old in text
    broken = directory / template.name
    broken.write_text(text.replace(old, new))
    return broken


@pytest.mark.parametrize(("old", "new", "rule"), [
    ("needs: [baseline, hmm]", "needs: [baseline, hmm-shards]", "job-needs"),
    ("if: needs.baseline.outputs.compare == 'true'",
     "if: needs.baseline.outputs.comparison == 'true'", "expression"),
    ('echo "$mode: exit status $status"', "echo $mode: exit status $status", "shellcheck"),
])
def test_actionlint_rejects_a_broken_workflow(tmp_path: Path, old: str, new: str,
                                              rule: str) -> None:
    result = actionlint(broken_copy(GITHUB, old, new, tmp_path))
    assert result.returncode != 0
    assert f"[{rule}]" in result.stdout


def test_the_gitlab_file_matches_gitlabs_schema() -> None:
    result = gitlab_schema(GITLAB)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("old", "new", "error"), [
    ("  when: always\n  timeout: 30m", "  whenn: always\n  timeout: 30m", "'whenn' was unexpected"),
    ("exit_codes: [1]", "exit_codes: one", "exit_codes"),
])
def test_the_gitlab_schema_rejects_a_broken_file(tmp_path: Path, old: str, new: str,
                                                 error: str) -> None:
    result = gitlab_schema(broken_copy(GITLAB, old, new, tmp_path))
    assert result.returncode != 0
    assert error in result.stdout


def gitlab_scripts(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(job: part, shell text) for each job's scripts, with what `extends` brings in; the
    runner runs before_script and script in one shell, after_script in another."""
    for name, job in document.items():
        if name.startswith(".") or not isinstance(job, dict) or "script" not in job:
            continue
        inherited: dict[str, Any] = {}
        for parent in ([job["extends"]] if isinstance(job.get("extends"), str)
                       else job.get("extends", [])):
            inherited |= document[parent]
        before = job.get("before_script", inherited.get("before_script", []))
        yield f"{name}: script", "\n".join([*before, *job["script"]])
        if after := job.get("after_script", inherited.get("after_script")):
            yield f"{name}: after_script", "\n".join(after)


def test_the_gitlab_scripts_pass_shellcheck() -> None:
    scripts = list(gitlab_scripts(load(GITLAB)))
    assert {part for part, _ in scripts} >= {"hmm: script", "hmm-report: script",
                                             "hmm-baseline: script"}
    for part, text in scripts:
        result = subprocess.run([shellcheck(), "--shell=bash", "-"], input=text,
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{part}:\n{result.stdout}"


# --- the harness's command lines -----------------------------------------------------------

# Plausible values of the variables the templates' command lines use.
VALUES = {
    "GITHUB_WORKSPACE": "/__w/linux/linux",
    "CI_PROJECT_DIR": "/builds/kernel/linux",
    "MODE": "private", "HMM_MODE": "private", "mode": "coherent",
    "SHARD": "2", "HMM_SHARD": "2", "SHARDS": "4", "HMM_SHARDS": "4",
}
# Arrays of optional arguments: each command line is parsed without them and with them.
ARRAYS = {
    "durations": ["--durations", "baseline/private/results.json"],
    "baseline": ["--baseline", "baseline/coherent"],
}
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
ARRAY = re.compile(r"\$\{(\w+)\[@\]\}")
OPERATOR = re.compile(r"[;&|()<>]+")
HARNESS = re.compile(r"ci/hmm\b|-m harness\b")


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def invocations(script: str) -> Iterator[list[str]]:
    """The words of each harness command in a shell script, from `run`/`merge`/... on, up to
    the first shell operator, with the variables still in them."""
    for line in script.replace("\\\n", " ").splitlines():
        if not HARNESS.search(line):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(lexer)
        for i, word in enumerate(words):
            if word.endswith("ci/hmm"):
                start = i + 1
            elif re.fullmatch(r"(\S*/)?python3?", word) and words[i + 1:i + 3] == ["-m",
                                                                                   "harness"]:
                start = i + 3
            else:
                continue
            end = next((j for j in range(start, len(words)) if OPERATOR.fullmatch(words[j])),
                       len(words))
            yield words[start:end]


def value_of(variable: re.Match[str]) -> str:
    name = variable[1] or variable[2]
    if name not in VALUES:
        pytest.fail(f"no plausible value for ${name} in {variable.string!r}: add one to VALUES")
    return VALUES[name]


def substituted(words: list[str], with_arrays: bool) -> list[str]:
    argv: list[str] = []
    for word in words:
        if array := ARRAY.fullmatch(word):
            if array[1] not in ARRAYS:
                pytest.fail(f"no plausible value for {word}: add one to ARRAYS")
            argv += ARRAYS[array[1]] if with_arrays else []
            continue
        plain = VARIABLE.sub(value_of, word)
        if "$" in plain:
            pytest.fail(f"an expansion the test cannot substitute: {word!r}")
        argv.append(plain)
    return argv


def harness_command_lines(path: Path) -> list[list[str]]:
    return [words for text in strings(load(path)) for words in invocations(text)]


def parse(words: list[str]) -> None:
    for with_arrays in (False, True):
        argv = substituted(words, with_arrays)
        try:
            args = build_parser().parse_args(argv)
        except UsageError as error:
            pytest.fail(f"{shlex.join(words)}\n  as {shlex.join(argv)}\n  {error}")
        assert args.command == argv[0]
        if getattr(args, "shard", None) is not None:
            assert re.fullmatch(r"[1-9]\d*/[1-9]\d*", args.shard), args.shard


@pytest.mark.parametrize("template", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_the_templates_harness_command_lines_parse(template: Path) -> None:
    lines = harness_command_lines(template)
    assert sorted(words[0] for words in lines) == ["merge", "run"]
    for words in lines:
        parse(words)


def test_the_command_line_extraction() -> None:
    script = ('status=0\nhmm-harness/ci/hmm run --kernel "$GITHUB_WORKSPACE/linux" \\\n'
              '    "${durations[@]}" --mode "$MODE" || status=$?\n'
              "git -C hmm-harness fetch -q --depth 1 url ref\n"
              "(cd x && .venv/bin/python3 -m harness merge a b --results 'm d'; echo)\n")
    lines = list(invocations(script))
    assert lines == [["run", "--kernel", "$GITHUB_WORKSPACE/linux", "${durations[@]}",
                      "--mode", "$MODE"],
                     ["merge", "a", "b", "--results", "m d"]]
    assert substituted(lines[0], True) == ["run", "--kernel", "/__w/linux/linux/linux",
                                           "--durations", "baseline/private/results.json",
                                           "--mode", "private"]
    assert substituted(lines[0], False) == ["run", "--kernel", "/__w/linux/linux/linux",
                                            "--mode", "private"]


def test_a_command_line_the_harness_does_not_take_fails() -> None:
    with pytest.raises(pytest.fail.Exception, match="--no-such-option"):
        parse(["run", "--kernel", "$CI_PROJECT_DIR", "--no-such-option"])
    with pytest.raises(pytest.fail.Exception, match="no plausible value"):
        parse(["run", "--kernel", "$UNKNOWN_DIR"])
