"""Console parsing, fed with real guest consoles captured from the Debian 7.2 kernel."""

from harness import console


def test_private_run_every_test_framed(data_dir):
    log = console.parse((data_dir / "console-private-pass.log").read_text())
    assert len(log.tests) == 38
    assert all(t.ended for t in log.tests.values())
    assert log.open_test is None
    assert any("HMM test module loaded" in line for line in log.session_lines)
    assert console.kernel_errors(log.session_lines) == []


def test_coherent_oops_is_inside_the_test_that_never_ended(data_dir):
    log = console.parse((data_dir / "console-coherent-oops.log").read_text())
    crashed = "tests/guest/test_hmm.py::test_migrate_anon_huge_err[coherent]"
    assert log.open_test == crashed
    errors = console.kernel_errors(log.tests[crashed].lines)
    assert errors[0].startswith("WARNING: mm/memremap.c:158 at memremap_pages")
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000008" in errors
    assert "Oops: Oops: 0000 [#1] SMP NOPTI" in errors
    assert any("dmirror_migrate_to_device" in line for line in log.tests[crashed].lines)


def test_warning_belongs_to_the_test_that_triggered_it(data_dir):
    log = console.parse((data_dir / "console-coherent-oops.log").read_text())
    write_child = log.tests["tests/guest/test_hmm.py::test_anon_write_child[coherent]"]
    assert write_child.ended
    assert console.distinct(console.kernel_errors(write_child.lines)) == [
        "WARNING: mm/memremap.c:158 at memremap_pages+0x53d/0x680, CPU#1: python3/122"]
    quiet = log.tests["tests/guest/test_hmm.py::test_anon_read[coherent]"]
    assert console.kernel_errors(quiet.lines) == []


def test_timestamps_and_carriage_returns_are_stripped():
    log = console.parse("[    1.000000] boot\r\n[    2.5] hmm-harness: begin 1 t::a\r\n"
                        "[    2.6] WARNING: x\r\n[    2.7] hmm-harness: end 1 t::a\r\n")
    assert log.session_lines == ["boot"]
    assert log.tests["t::a"].lines == ["WARNING: x"]


def test_excerpt_keeps_the_start_of_the_first_report():
    lines = [f"line {i}" for i in range(1000)]
    lines[700] = "BUG: kernel NULL pointer dereference, address: 0000000000000008"
    kept = console.excerpt(lines, limit=100)
    assert len(kept) == 100 and kept[5] == lines[700]
    assert console.excerpt(lines[:50], limit=100) == lines[:50]


def test_distinct_reports_are_capped():
    assert console.distinct(["a", "b", "a"] * 10) == ["a", "b"]
    assert len(console.distinct([str(i) for i in range(50)])) == 20
