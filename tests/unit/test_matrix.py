"""The test x kernel table of a run with several --kernel options."""

from pathlib import Path

import pytest

from harness import matrix
from harness.errors import UsageError


def columns():
    sid = matrix.Column("sid", "sid", Path("/r/sid"), release="7.2.13+deb14-amd64",
                        outcomes={"tests/guest/test_hmm.py::test_open_close[private]": "passed",
                                  "tests/guest/test_hmm.py::test_read[private]": "passed"},
                        passed=True)
    exp = matrix.Column("experimental", "experimental", Path("/r/experimental"),
                        release="7.3-amd64",
                        outcomes={"tests/guest/test_hmm.py::test_open_close[private]": "passed",
                                  "tests/guest/test_hmm.py::test_read[private]": "failed",
                                  "tests/guest/test_hmm.py::test_read_unlocked[private]":
                                      "passed"})
    return [sid, exp]


def test_table_marks_changed_rows():
    lines = matrix.table(columns()).splitlines()
    assert lines[0].split() == ["test", "sid", "experimental"]
    assert lines[1].split() == ["7.2.13+deb14-amd64", "7.3-amd64"]
    assert lines[2].split() == ["test_hmm.py::test_open_close[private]", "passed", "passed"]
    assert lines[3].split() == ["test_hmm.py::test_read[private]", "passed", "failed", "*"]
    assert lines[4].split() == ["test_hmm.py::test_read_unlocked[private]", "-", "passed", "*"]
    assert lines[5] == "2 of 3 tests differ between kernels (*)"


def test_json_and_status():
    cols = columns()
    data = matrix.to_json(cols)
    assert data["tests"]["tests/guest/test_hmm.py::test_read[private]"] == {
        "sid": "passed", "experimental": "failed"}
    assert data["tests"]["tests/guest/test_hmm.py::test_read_unlocked[private]"]["sid"] is None
    assert data["changed"] == ["tests/guest/test_hmm.py::test_read[private]",
                               "tests/guest/test_hmm.py::test_read_unlocked[private]"]
    assert matrix.status(cols) == "failed"
    cols[1] = matrix.Column("tree", "tree", Path("/r/tree"), error="building failed")
    assert matrix.status(cols) == "error"
    assert "tree: could not run: building failed" in matrix.table(cols)
    assert not matrix.changed("tests/guest/test_hmm.py::test_read[private]", cols)
    assert matrix.status(cols[:1]) == "passed"


def test_labels_are_distinct_and_safe(tmp_path):
    one, two = tmp_path / "a/linux", tmp_path / "b/linux"
    for tree in (one, two):
        for name in ("Makefile", "Kconfig", "arch/x86/Kconfig"):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_text("")
    assert matrix.labels(["sid:7.2.13+deb14-amd64", "experimental", str(one), str(two)]) == [
        "sid-7.2.13+deb14-amd64", "experimental", "3-linux", "4-linux"]


def test_same_kernel_twice_is_refused():
    with pytest.raises(UsageError, match="same kernel twice"):
        matrix.columns_for(["sid", "sid"], Path("/r"))
