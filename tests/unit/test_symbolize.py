"""Stack frames of real kernel reports, and their decoding to file:line.

Data: console-coherent-oops.log (a WARN in memremap_pages, then an Oops in test_hmm's
dmirror_migrate_to_device, Debian 7.2.13); test_hmm-7.2.13-nodebug.ko.xz (the test_hmm.ko of
that kernel with `objcopy --strip-debug`: its symbol table, not its DWARF); an excerpt of the
real System.map of linux-image-7.2.13+deb14-amd64-dbg; and what addr2line printed for the
frames of the log, from test_hmm.ko and from the debug package's vmlinux.
"""

import io
import lzma

import pytest

from harness import console, debuginfo, results, symbolize
from harness.commands import CommandRunner

OOPS_RIP = "RIP: 0010:dmirror_migrate_to_device.constprop.0+0x4ad/0xb20 [test_hmm]"


@pytest.fixture
def oops_lines(data_dir):
    text = (data_dir / "console-coherent-oops.log").read_text()
    return [console.strip_timestamp(line) for line in text.splitlines()]


@pytest.fixture
def test_hmm_symbols(data_dir):
    data = lzma.decompress((data_dir / "test_hmm-7.2.13-nodebug.ko.xz").read_bytes())
    return symbolize.parse_elf_functions(data)


def test_oops_rip_is_a_module_frame():
    frame = symbolize.parse_frame(OOPS_RIP)
    assert frame == symbolize.Frame("dmirror_migrate_to_device.constprop.0", 0x4AD, 0xB20,
                                    "test_hmm", "rip")
    assert frame.lookup_offset == 0x4AD  # the faulting instruction itself


@pytest.mark.parametrize(("line", "expected"), [
    (" dmirror_allocate_chunk+0xf1/0x400 [test_hmm]",
     ("dmirror_allocate_chunk", 0xF1, 0x400, "test_hmm", "call")),
    (" ? lru_gen_add_folio+0x35b/0x530", ("lru_gen_add_folio", 0x35B, 0x530, None, "guess")),
    ("RIP: 0010:memremap_pages+0x53d/0x680", ("memremap_pages", 0x53D, 0x680, None, "rip")),
    ("WARNING: mm/memremap.c:158 at memremap_pages+0x53d/0x680, CPU#1: python3/122",
     ("memremap_pages", 0x53D, 0x680, None, "rip")),
    (" __list_lru_add.part.0+0x2f/0x90", ("__list_lru_add.part.0", 0x2F, 0x90, None, "call")),
    # 7.2's WARNING line, from the harness's own hmm_faults module.
    ("WARNING: hmm_faults.c:37 at hmm_faults_warn+0xc/0x20 [hmm_faults], CPU#0: python3/120",
     ("hmm_faults_warn", 0xC, 0x20, "hmm_faults", "rip")),
    # The sleeper in a sysrq-w dump.
    (" hmm_faults_sleep+0x80/0xc0 [hmm_faults]",
     ("hmm_faults_sleep", 0x80, 0xC0, "hmm_faults", "call")),
    # With CONFIG_STACKTRACE_BUILD_ID the module carries its build id.
    (" hmm_faults_oops+0x9/0x20 [hmm_faults 0123456789abcdef]",
     ("hmm_faults_oops", 0x9, 0x20, "hmm_faults", "call")),
])
def test_frames_of_each_shape(line, expected):
    assert symbolize.parse_frame(line) == symbolize.Frame(*expected)


@pytest.mark.parametrize("line", [
    "RIP: 0033:0x7f7d2a43cf5b",  # user space
    "Code: 10 00 00 49 83 c6 40 4c 3b 64 24 08 0f 84 e6 02 00 00",
    "Modules linked in: test_hmm(OE) 9p 9pnet_virtio 9pnet netfs",
    "BUG: kernel NULL pointer dereference, address: 0000000000000008",
])
def test_lines_without_a_kernel_frame(line):
    assert symbolize.parse_frame(line) is None


def test_a_return_address_is_looked_up_at_its_call():
    frame = symbolize.parse_frame(" dmirror_fops_unlocked_ioctl+0x5bf/0x98d [test_hmm]")
    assert frame is not None and frame.lookup_offset == 0x5BE


def test_repeated_reports_give_each_frame_once(oops_lines):
    frames = symbolize.frames_in(oops_lines)
    texts = [f.text for f in frames]
    assert len(texts) == len(set(texts))
    # The same WARN stack comes ten times in this log; the Oops RIP comes last.
    assert texts.count("dmirror_allocate_chunk+0xf1/0x400 [test_hmm]") == 1
    assert "RIP dmirror_migrate_to_device.constprop.0+0x4ad/0xb20 [test_hmm]" in texts
    assert not any("__pfx_" in t for t in texts)


def test_module_symbols_come_with_their_section(test_hmm_symbols):
    [symbol] = test_hmm_symbols["dmirror_migrate_to_device.constprop.0"]
    assert (symbol.address, symbol.size, symbol.section) == (0xE70, 2847, ".text")
    frame = symbolize.parse_frame(OOPS_RIP)
    assert frame is not None
    assert symbolize.choose_symbol(test_hmm_symbols[frame.symbol], frame.size) == symbol


def test_system_map_sizes_are_what_kallsyms_reports(data_dir):
    table = symbolize.parse_system_map((data_dir / "system-map-7.2.13-excerpt.txt").read_text())
    [memremap] = table["memremap_pages"]
    assert (memremap.address, memremap.size) == (0xFFFFFFFF818154C0, 0x680)  # "/0x680"
    assert table["entry_SYSCALL_64_after_hwframe"][0].size == 0x7E


def test_the_reported_length_picks_among_statics_of_one_name(data_dir):
    table = symbolize.parse_system_map((data_dir / "system-map-7.2.13-excerpt.txt").read_text())
    chosen = symbolize.choose_symbol(table["cr4_set_bits"], 0x40)
    assert chosen is not None and chosen.address == 0xFFFFFFFF81316250


def test_the_placeholder_system_map_of_linux_base_has_no_symbols():
    placeholder = ("ffffffffffffffff B The real System.map is in the "
                   "linux-image-7.2.13+deb14-amd64-dbg package\n")
    assert symbolize.parse_system_map(placeholder) == {}


def test_addr2line_output_with_inlined_callers(data_dir):
    found = symbolize.parse_addr2line((data_dir / "addr2line-test_hmm-7.2.13.txt").read_text())
    assert found[0x131D] == [
        ("_compound_head",
         "/usr/src/linux-headers-7.2.13+deb14-common/include/linux/page-flags.h:226"),
        ("is_device_private_page",
         "/usr/src/linux-headers-7.2.13+deb14-common/include/linux/memremap.h:176"),
        ("dmirror_migrate_alloc_and_copy", "/hmm/build/test_hmm.c:791"),
        ("dmirror_migrate_to_device", "/hmm/build/test_hmm.c:1248"),
    ]
    assert found[0x398E] == [("dmirror_fops_unlocked_ioctl", "/hmm/build/test_hmm.c:1547")]


def test_an_address_addr2line_knows_nothing_of():
    found = symbolize.parse_addr2line("0x0000000000099999: ?? ??:0\n")
    assert found == {0x99999: []}
    frame = symbolize.Frame("f", 1, 2, "m", "call")
    assert symbolize.describe(frame, found[0x99999], {}) == "f+0x1/0x2 [m]: no line information"


def test_decoded_oops_names_the_line_in_lib_test_hmm(data_dir):
    found = symbolize.parse_addr2line((data_dir / "addr2line-test_hmm-7.2.13.txt").read_text())
    frame = symbolize.parse_frame(OOPS_RIP)
    assert frame is not None
    text = symbolize.describe(frame, found[0xE70 + 0x4AD], {"/hmm/build/": "lib/"})
    assert text == (
        "RIP dmirror_migrate_to_device.constprop.0+0x4ad/0xb20 [test_hmm]: "
        "_compound_head at include/linux/page-flags.h:226, "
        "inlined by is_device_private_page at include/linux/memremap.h:176, "
        "inlined by dmirror_migrate_alloc_and_copy at lib/test_hmm.c:791, "
        "inlined by dmirror_migrate_to_device at lib/test_hmm.c:1248")


@pytest.mark.parametrize(("path", "expected"), [
    ("debian/build/build_amd64_none_amd64/mm/memremap.c", "mm/memremap.c"),
    ("/build/linux-7.2.13/mm/migrate_device.c", "mm/migrate_device.c"),
    ("/usr/src/linux-headers-7.2.13+deb14-common/include/linux/mm.h", "include/linux/mm.h"),
    ("/hmm/build/extra/hmm_faults/hmm_faults.c", "tests/kmod/hmm_faults/hmm_faults.c"),
    ("/hmm/build/test_hmm.c", "lib/test_hmm.c"),
])
def test_source_paths_as_a_kernel_developer_knows_them(path, expected):
    prefixes = {"/hmm/build/": "lib/", "/hmm/build/extra/hmm_faults/": "tests/kmod/hmm_faults/"}
    assert symbolize.source_path(path, prefixes) == expected


class _CannedAddr2line(CommandRunner):
    """Answers addr2line with what it printed for these addresses."""

    def __init__(self, outputs):
        super().__init__(log=io.StringIO())
        self.outputs = outputs
        self.calls = []

    def run(self, argv, **kwargs):
        self.calls.append([str(a) for a in argv])
        return self.outputs[str(argv[argv.index("-e") + 1])]


def test_decode_sets_each_tests_decoded_frames(data_dir, oops_lines, test_hmm_symbols,
                                              monkeypatch, tmp_path):
    text = (data_dir / "console-coherent-oops.log").read_text()
    events = results.parse_events((data_dir / "events-coherent-oops.jsonl").read_text())
    tests = results.merge(events, console.parse(text))
    info = debuginfo.DebugInfo(prefixes={"/hmm/build/": "lib/"})
    info.objects["test_hmm"] = debuginfo.DebugObject(tmp_path / "test_hmm.ko", "built here",
                                                     _symbols=test_hmm_symbols)
    info.objects["vmlinux"] = debuginfo.DebugObject(
        tmp_path / "vmlinux", "debug package", _symbols=symbolize.parse_system_map(
            (data_dir / "system-map-7.2.13-excerpt.txt").read_text()))
    runner = _CannedAddr2line({
        str(tmp_path / "test_hmm.ko"): (data_dir / "addr2line-test_hmm-7.2.13.txt").read_text(),
        str(tmp_path / "vmlinux"): (data_dir / "addr2line-vmlinux-7.2.13.txt").read_text()})
    monkeypatch.setattr(debuginfo, "require_tool", lambda name, package: name)
    debuginfo.decode(tests, info, runner)
    crashed = next(t for t in tests if t.outcome == "crashed")
    assert crashed.decoded[-1].startswith(
        "RIP dmirror_migrate_to_device.constprop.0+0x4ad/0xb20 [test_hmm]: _compound_head at "
        "include/linux/page-flags.h:226")
    assert ("__x64_sys_ioctl+0xb9/0x100: vfs_ioctl at fs/ioctl.c:51, inlined by "
            "__do_sys_ioctl at fs/ioctl.c:597, inlined by __se_sys_ioctl at fs/ioctl.c:583, "
            "inlined by __x64_sys_ioctl at fs/ioctl.c:583") in crashed.decoded
    # Only frames of objects with debug information are listed.
    assert not any("lru_gen_add_folio" in line for line in crashed.decoded)
    # One addr2line call per object and section, whatever the number of tests.
    assert sorted(call[call.index("-e") + 1].rsplit("/", 1)[1] for call in runner.calls) == [
        "test_hmm.ko", "vmlinux"]
    # A module is relocatable: its addresses are offsets in a section. vmlinux's are absolute.
    sections = {call[call.index("-e") + 1].rsplit("/", 1)[1]:
                call[call.index("-j") + 1] if "-j" in call else None for call in runner.calls}
    assert sections == {"test_hmm.ko": ".text", "vmlinux": None}


def test_installed_kernel_version_from_the_guest_roots_dpkg_status():
    status = ("Package: linux-base\nVersion: 4.12\n\n"
              "Package: linux-binary-7.2.13+deb14-amd64\nStatus: install ok installed\n"
              "Version: 7.2.13-1\n\n")
    assert debuginfo.installed_version(status, "linux-binary-7.2.13+deb14-amd64") == "7.2.13-1"
    assert debuginfo.installed_version(status, "linux-binary-7.3-amd64") is None
