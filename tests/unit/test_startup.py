"""Start-up phases, fed with the moments a real TCG boot of the Debian 7.2 kernel recorded."""

import json

import pytest

from harness import cli, startup, startupbench
from harness.guest import protocol


@pytest.fixture
def line(data_dir):
    return json.loads((data_dir / "startup-private-7.2.json").read_text())


@pytest.fixture
def events(data_dir):
    text = (data_dir / "events-startup-private-7.2.jsonl").read_text()
    return [json.loads(row) for row in text.splitlines()]


def test_the_guest_clock_is_tied_by_the_event_that_arrived_soonest(events):
    # The events are real; their arrival times are made up: each one late by a different
    # poll delay, the third the least late.
    zero = 200.0
    delays = [0.31, 0.12, 0.02, 0.2, 0.05, 0.4, 0.3, 0.08]
    arrivals = [zero + e["uptime"] + d for e, d in zip(events, delays, strict=True)]
    line = startup.timeline(events, arrivals, qemu_started=198.0, qemu_ended=230.0)
    assert line["guest_zero"] == pytest.approx(zero + 0.02)
    assert line["guest"] == {"initramfs": 2.85, "switch_root": 3.25, "guest-started": 5.1246,
                             "pytest-started": 9.1223, "module-loaded": 9.5458,
                             "collected": 10.271, "first-result": 10.5207}


def test_events_without_an_uptime_are_left_out_of_the_clock(events):
    unstamped = [{"event": "guest-started"}, *events[1:]]
    arrivals = [300.0 + float(e.get("uptime", 0.0)) for e in unstamped]
    line = startup.timeline(unstamped, arrivals, qemu_started=298.0, qemu_ended=320.0)
    assert "guest-started" not in line["guest"]
    assert line["guest"]["pytest-started"] == 9.1223


def test_phases_of_a_real_boot_add_up_to_the_whole_command(line):
    started, ended = line["run_started"], line["qemu_ended"] + 8.0
    rows = startup.phases(line, started, ended)
    assert [row.name for row in rows] == [
        "host work before QEMU", "QEMU and firmware to the kernel's start",
        *(name for _, name in startup.GUEST_MOMENTS),
        "the rest: later tests, power-off, reports"]
    assert sum(row.seconds for row in rows) == pytest.approx(ended - started)
    assert rows[0].seconds == pytest.approx(209.365573286 - 137.037451885)
    by_name = {row.name: row for row in rows}
    assert by_name["pytest import and plugin load"].seconds == pytest.approx(9.1223 - 5.1246)
    assert by_name["collection"].guest_end == 10.271


def test_first_result_is_on_the_host_clock(line):
    seconds = startup.first_result(line, line["run_started"])
    assert seconds == pytest.approx(211.127497235 + 10.5207 - 137.037451885)


def test_a_boot_that_never_reached_the_guest_has_only_host_phases(line):
    unreached = {**line, "guest_zero": None, "guest": {}}
    rows = startup.phases(unreached, line["run_started"], line["qemu_ended"])
    assert [row.name for row in rows] == ["host work before QEMU"]
    assert startup.first_result(unreached, line["run_started"]) is None


def test_a_boot_that_stopped_early_ends_its_phases_there(line):
    cut = {**line, "guest": {k: v for k, v in line["guest"].items()
                             if k in ("initramfs", "switch_root", "guest-started")}}
    rows = startup.phases(cut, line["run_started"], line["qemu_ended"])
    assert rows[-2].name == "switch_root and Python start"
    assert rows[-1].name == "the rest: later tests, power-off, reports"


def test_the_summary_takes_medians_and_the_ratio_to_the_bare_boot(line):
    rows = startup.phases(line, line["run_started"], line["qemu_ended"])
    first = startup.first_result(line, line["run_started"])
    assert first is not None
    rounds = [startupbench.Round(bare, rows, first + extra, 150.0)
              for bare, extra in ((4.0, 0.0), (5.0, 1.0), (6.0, 3.0))]
    summary = startupbench.summarize(rounds)
    assert summary["bare_boot"] == 5.0
    assert summary["first_result"] == pytest.approx(first + 1.0)
    assert summary["first_result_ratio"] == pytest.approx((first + 1.0) / 5.0)
    assert "command to the first result" in summary["table"]
    assert len(summary["per_round"]) == 3


def test_the_table_leaves_the_guest_column_blank_for_host_phases(line):
    text = startup.table(startup.phases(line, line["run_started"], line["qemu_ended"]))
    host_row = text.splitlines()[1]
    assert host_row.startswith("host work before QEMU")
    assert host_row.rstrip().endswith(f"{209.365573286 - 137.037451885:9.2f}")


def test_the_initramfs_times_are_read_from_its_variable():
    assert protocol.boot_times("initramfs=2.85 switch_root=3.25") == {
        "initramfs": 2.85, "switch_root": 3.25}
    assert protocol.boot_times("initramfs=2.85 switch_root=") == {"initramfs": 2.85}


@pytest.mark.parametrize(("argv", "problem"), [
    (["--rounds", "0"], "--rounds 0 is not a positive count"),
    (["--reference"], "--reference adds the C selftest"),
])
def test_bad_startup_options_fail_before_any_build(capsys, tmp_path, monkeypatch, argv,
                                                   problem):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))
    status = cli.main(["bench", "--startup", "--results", str(tmp_path / "r"), *argv])
    assert status == cli.EXIT_HARNESS
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
