"""The settings the suites run under, applied to files that stand in for /proc and /sys."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.guest import kernelsettings


def test_settings_are_written_where_the_kernel_has_them_and_the_old_values_returned(
        tmp_path: Path) -> None:
    present, absent = tmp_path / "compaction_proactiveness", tmp_path / "no_such_knob"
    present.write_text("20\n")
    before = kernelsettings.apply({str(present): "0", str(absent): "N"})
    assert before == {str(present): "20"}
    assert present.read_text() == "0" and not absent.exists()


def test_a_run_on_a_host_gives_back_what_it_changed_even_when_it_fails(tmp_path: Path) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text("Y\n")
    with pytest.raises(RuntimeError), kernelsettings.Applied({str(enabled): "N"}) as before:
        assert enabled.read_text() == "N" and before == {str(enabled): "Y"}
        raise RuntimeError("the suites failed")
    assert enabled.read_text() == "Y"

