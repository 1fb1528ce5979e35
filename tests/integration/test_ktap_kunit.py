"""results.ktap read back with the kernel's own KTAP parser (tools/testing/kunit/kunit_parser.py
of the default kernel's source, which the harness unpacks), counts checked against the
outcomes results.json has."""

import sys

import pytest

from harness import console, ktap, results

pytestmark = pytest.mark.vm


@pytest.fixture
def kunit(default_kernel):
    directory = default_kernel.kernel.source_dir / "tools/testing/kunit"
    sys.path.insert(0, str(directory))
    try:
        import kunit_parser
        import kunit_printer
    finally:
        sys.path.remove(str(directory))
    return kunit_parser, kunit_printer


@pytest.mark.parametrize(("name", "mode"), [("coherent-oops", "coherent"),
                                            ("private-pass", "private")])
def test_kernel_parser_counts_match_results_json(kunit, data_dir, tmp_path, name, mode):
    parser, printer = kunit
    events = results.parse_events((data_dir / f"events-{name}.jsonl").read_text())
    log = console.parse((data_dir / f"console-{name}.log").read_text())
    report = results.RunReport(tests=results.merge(events, log), kernel={"release": "7.2.13"},
                               kconfig={}, accelerator="tcg", mode=mode)
    with (tmp_path / "kunit.out").open("w") as output:
        parsed = parser.parse_run_tests(ktap.to_ktap(report).splitlines(),
                                        printer.Printer(output))
    expected = report.counts()
    assert parsed.counts.passed == expected["passed"]
    assert parsed.counts.skipped == expected["skipped"]
    assert parsed.counts.failed == len(report.tests) - expected["passed"] - expected["skipped"]
    assert parsed.counts.errors == 0


@pytest.fixture
def data_dir():
    from tests.unit.conftest import DATA

    return DATA
