"""`harness bisect` for real: a small git history of the default kernel's test_hmm sources in
which one commit breaks dmirror_do_read()'s copy, bisected with --test-hmm-source against the
default Debian kernel (no kernel build; two or three guest boots)."""

import json
import shutil
import subprocess
import sys

import pytest

from harness import cli, debian
from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm

COPY_LINE = "memcpy_from_page(ptr, page, 0, PAGE_SIZE);"
SELECTION = "anon_read and not prot and not multiple"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=hmm-harness",
                           "-c", "user.email=hmm-harness@example.invalid", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def commit(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path, default_kernel):
    """good -> comment -> BUG -> comment -> comment (bad). Returns (repo, good, bug, bad)."""
    source_lib = default_kernel.kernel.source_dir / "lib"
    repo = tmp_path / "test_hmm-history"
    (repo / "lib").mkdir(parents=True)
    for name in ("test_hmm.c", "test_hmm_uapi.h"):
        shutil.copy(source_lib / name, repo / "lib" / name)
    git(repo, "init", "-q")
    good = commit(repo, f"test_hmm as in {debian.PINNED_RELEASE}")
    source = repo / "lib/test_hmm.c"

    def append_comment(text):
        source.write_text(source.read_text() + f"/* {text} */\n")

    append_comment("a harmless change")
    commit(repo, "harmless: a comment")
    text = source.read_text()
    assert text.count(COPY_LINE) == 1
    source.write_text(text.replace(COPY_LINE, COPY_LINE + "\n\t\t*(unsigned char *)ptr ^= 1;"))
    bug = commit(repo, "dmirror_do_read: flip the first byte of every page read")
    append_comment("another harmless change")
    commit(repo, "harmless: another comment")
    append_comment("and one more")
    bad = commit(repo, "harmless: a third comment")
    return repo, good, bug, bad


def test_bisect_finds_the_commit_that_breaks_mirror_reads(history, tmp_path):
    repo, good, bug, bad = history
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "bisect", "--tree", str(repo),
                           "--good", good, "--bad", bad, "--test-hmm-source", str(repo),
                           "-k", SELECTION, "--results", str(results)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3000)
    output = proc.stdout + proc.stderr
    print(output[-8000:])
    assert proc.returncode == cli.EXIT_PASSED, output
    assert f"first bad commit: {bug}" in output
    assert "dmirror_do_read: flip the first byte" in output
    # The failing test's own log is printed.
    assert "--- failed: tests/guest/test_hmm.py::test_anon_read[private]" in output
    report = json.loads((results / "bisect.json").read_text())
    assert report["culprit"] == bug
    verdicts = {step["commit"]: step["verdict"] for step in report["steps"]}
    assert verdicts.get(bug) == "bad"
    assert len(report["steps"]) <= 3
    assert (results / "bisect-log.txt").read_text().count("git bisect") >= 2
    # The user's checkout is untouched and no worktree is left behind.
    assert git(repo, "rev-parse", "HEAD") == bad
    assert git(repo, "status", "--porcelain") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 1
