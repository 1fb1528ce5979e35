"""harness.kmodext against the real 7.2 lib/test_hmm.c, lib/test_hmm_uapi.h and migrate.h
(from linux-source-7.2 and linux-headers-7.2.13+deb14-common), and edits of them that stand
for older kernels, newer ones and the migrate-pfn series."""

from __future__ import annotations

import difflib
import json
import lzma
import re
from pathlib import Path

import pytest

from harness import kmodext
from harness.kmodext import ExtensionError, SignatureError

RAW_PROTOTYPE = "int migrate_device_pfns(unsigned long *src_pfns, unsigned long npages);"
WHERE = "/usr/src/linux-headers-7.2.13+deb14-common/include/linux/migrate.h"


@pytest.fixture
def test_hmm_c(data_dir: Path) -> str:
    return lzma.decompress((data_dir / "linux-7.2.13-lib-test_hmm.c.xz").read_bytes()).decode()


@pytest.fixture
def uapi_h(data_dir: Path) -> str:
    return (data_dir / "linux-7.2.13-lib-test_hmm_uapi.h").read_text()


@pytest.fixture
def migrate_h(data_dir: Path) -> str:
    path = data_dir / "linux-7.2.13-include-linux-migrate.h.xz"
    return lzma.decompress(path.read_bytes()).decode()


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in the text exactly once"
    return text.replace(old, new)


# -- deciding from migrate.h


def test_7_2_takes_the_extension(migrate_h: str) -> None:
    decision = kmodext.decide(migrate_h, WHERE)
    assert decision.applied
    assert decision.prototype == kmodext.EXPECTED_PROTOTYPE
    assert WHERE in decision.reason


def test_a_kernel_before_6_15_is_built_without_it(migrate_h: str) -> None:
    older = replaced(migrate_h, RAW_PROTOTYPE, "")
    decision = kmodext.decide(older, WHERE)
    assert not decision.applied
    assert "declares no migrate_device_pfns() (exported since 6.15)" in decision.reason


def test_headers_without_migrate_h_are_built_without_it() -> None:
    decision = kmodext.decide(None, WHERE)
    assert not decision.applied
    assert "no include/linux/migrate.h" in decision.reason


def test_spacing_and_comments_do_not_matter(migrate_h: str) -> None:
    reformatted = replaced(migrate_h, RAW_PROTOTYPE,
                           "extern int\nmigrate_device_pfns(unsigned long* src_pfns, /* raw */\n"
                           "\t\t\tunsigned long npages);")
    assert kmodext.decide(reformatted, WHERE).applied


def test_a_stub_with_the_same_prototype_is_fine(migrate_h: str) -> None:
    with_stub = migrate_h + ("\n#else\nstatic inline int migrate_device_pfns(unsigned long "
                             "*src_pfns, unsigned long npages) { return -EINVAL; }\n")
    assert kmodext.decide(with_stub, WHERE).applied


def test_a_call_is_not_a_declaration(migrate_h: str) -> None:
    caller = migrate_h + ("\nstatic inline int evict_all(unsigned long *p, unsigned long n)\n"
                          "{\n\treturn migrate_device_pfns(p, n);\n}\n")
    assert kmodext.decide(caller, WHERE).applied


@pytest.mark.parametrize("declared", [
    "int migrate_device_pfns(unsigned long *src_mpfns, unsigned long npages);",
    "int migrate_device_pfns(unsigned long *src_pfns, unsigned long npages, "
    "struct page *fault_page);",
    "long migrate_device_pfns(unsigned long *src_pfns, unsigned long npages);",
    "int migrate_device_pfns(const unsigned long *src_pfns, unsigned long npages);",
])
def test_another_signature_fails_naming_both(migrate_h: str, declared: str) -> None:
    with pytest.raises(SignatureError) as raised:
        kmodext.decide(replaced(migrate_h, RAW_PROTOTYPE, declared), WHERE)
    message = str(raised.value)
    assert " ".join(declared.rstrip(";").split()) in message
    assert kmodext.EXPECTED_PROTOTYPE in message
    assert WHERE in message
    assert "fix:" in message


@pytest.mark.parametrize("addition, marker", [
    ("static inline unsigned long migrate_pfn_from_page(struct page *page)\n"
     "{\n\treturn migrate_pfn(page_to_pfn(page));\n}\n", "migrate_pfn_from_page()"),
    ("#define MIGRATE_PFN_DEVICE_PRIVATE\t(1UL << 5)\n", "MIGRATE_PFN_DEVICE_PRIVATE"),
])
def test_the_migrate_pfn_series_fails_though_the_type_is_the_same(
        migrate_h: str, addition: str, marker: str) -> None:
    series = replaced(migrate_h, "#define MIGRATE_PFN_SHIFT\t6\n",
                      "#define MIGRATE_PFN_SHIFT\t6\n" + addition)
    with pytest.raises(SignatureError) as raised:
        kmodext.decide(series, WHERE)
    message = str(raised.value)
    assert marker in message
    assert kmodext.EXPECTED_PROTOTYPE in message
    assert "migrate-pfns" in message


def test_a_marker_in_a_comment_is_not_the_series(migrate_h: str) -> None:
    commented = migrate_h + "\n/* no migrate_pfn_from_page() here yet */\n"
    assert kmodext.decide(commented, WHERE).applied


# -- editing test_hmm_uapi.h


def test_the_ioctl_is_numbered_after_the_highest(uapi_h: str) -> None:
    assert max(kmodext.ioctl_numbers(uapi_h).values()) == 0x08
    patched, number = kmodext.patch_uapi_header(uapi_h)
    assert number == 0x09
    assert kmodext.ioctl_numbers(patched) == {**kmodext.ioctl_numbers(uapi_h),
                                              "HMM_DMIRROR_EVICT_PFNS": 0x09}
    lines = patched.splitlines()
    flags = next(i for i, line in enumerate(lines) if "HMM_DMIRROR_FLAGS" in line)
    assert "HMM_DMIRROR_EVICT_PFNS" in lines[flags + 2]


def test_a_newer_header_moves_the_number_up(uapi_h: str) -> None:
    # 7.3 adds HMM_DMIRROR_READ_UNLOCKED at 0x09.
    newer = replaced(uapi_h, "#define HMM_DMIRROR_FLAGS\t\t_IOWR('H', 0x08, struct "
                             "hmm_dmirror_cmd)\n",
                     "#define HMM_DMIRROR_FLAGS\t\t_IOWR('H', 0x08, struct hmm_dmirror_cmd)\n"
                     "#define HMM_DMIRROR_READ_UNLOCKED\t_IOWR('H', 0x09, struct "
                     "hmm_dmirror_cmd)\n")
    patched, number = kmodext.patch_uapi_header(newer)
    assert number == 0x0A
    assert "_IOWR('H', 0x0a, struct hmm_dmirror_cmd)" in patched


def test_a_header_that_has_the_name_already_is_refused(uapi_h: str) -> None:
    taken, _ = kmodext.patch_uapi_header(uapi_h)
    with pytest.raises(ExtensionError, match="already defines HMM_DMIRROR_EVICT_PFNS"):
        kmodext.patch_uapi_header(taken)


def test_a_header_without_ioctls_is_refused() -> None:
    with pytest.raises(ExtensionError, match="no `#define HMM_DMIRROR_"):
        kmodext.patch_uapi_header("#define HMM_DMIRROR_FLAG_FAIL_ALLOC (1ULL << 0)\n")


# -- editing test_hmm.c


def added_lines(before: str, after: str) -> list[str]:
    """The lines `after` adds; fails if it removes or changes any."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert not [line for line in diff if line.startswith("- ")], "a line was removed"
    return [line[2:] for line in diff if line.startswith("+ ")]


def test_the_patch_only_adds_the_include_and_one_case(test_hmm_c: str) -> None:
    patched = kmodext.patch_test_hmm(test_hmm_c)
    added = [line for line in added_lines(test_hmm_c, patched) if line.strip()]
    # (the diff may pair the new `break;` with either of two identical lines)
    assert sorted(added) == sorted([
        "/* hmm-harness (harness/kmodext.py): the HMM_DMIRROR_EVICT_PFNS handler */",
        '#include "test_hmm_evict.c"',
        "\tcase HMM_DMIRROR_EVICT_PFNS:\t/* hmm-harness: kmod/test_hmm_evict.c */",
        "\t\tret = dmirror_evict_pfns(dmirror, &cmd);",
        "\t\tbreak;",
    ])


def test_the_include_comes_right_before_the_ioctl_function(test_hmm_c: str) -> None:
    patched = kmodext.patch_test_hmm(test_hmm_c)
    include = patched.index('#include "test_hmm_evict.c"')
    function = patched.index("static long dmirror_fops_unlocked_ioctl(")
    assert include < function
    assert patched[include:function].count("\n") == 2
    # Everything the extension uses is defined above it.
    for needed in ("struct dmirror {", "struct dmirror_device {", "#define BACKING_PAGE(",
                   "static struct dmirror_device *dmirror_page_to_device("):
        assert patched.index(needed) < include


def test_the_case_sits_in_the_switch_before_default(test_hmm_c: str) -> None:
    patched = kmodext.patch_test_hmm(test_hmm_c)
    function = patched.index("static long dmirror_fops_unlocked_ioctl(")
    switch = patched.index("switch (command) {", function)
    case = patched.index("case HMM_DMIRROR_EVICT_PFNS:", function)
    default = patched.index("\tdefault:\n\t\treturn -EINVAL;", function)
    assert switch < patched.index("case HMM_DMIRROR_FLAGS:", switch) < case < default
    # The stock cases before it still end in their own break.
    assert patched[:case].rstrip().endswith("break;")


@pytest.mark.parametrize("old, new, complaint", [
    ("static long dmirror_fops_unlocked_ioctl(", "static long dmirror_ioctl(",
     "0 definitions of `static long dmirror_fops_unlocked_ioctl("),
    ("\tdefault:\n\t\treturn -EINVAL;\n\t}\n\tif (ret)", "\t}\n\tif (ret)",
     "no `default:` label"),
    ("\tswitch (command) {", "\tswitch (cmd.flags) {", "0 `switch (command) {`"),
    ("\tstruct hmm_dmirror_cmd cmd;\n\tstruct dmirror *dmirror;\n\tint ret;",
     "\tstruct hmm_dmirror_cmd req;\n\tstruct dmirror *dmirror;\n\tint ret;",
     "no local `cmd`"),
])
def test_a_missing_anchor_fails_clearly(test_hmm_c: str, old: str, new: str,
                                        complaint: str) -> None:
    with pytest.raises(ExtensionError) as raised:
        kmodext.patch_test_hmm(replaced(test_hmm_c, old, new))
    assert complaint in str(raised.value)
    assert "update the anchors in harness/kmodext.py" in str(raised.value)


def test_patching_twice_is_refused(test_hmm_c: str) -> None:
    with pytest.raises(ExtensionError, match="already has a dmirror_evict_pfns"):
        kmodext.patch_test_hmm(kmodext.patch_test_hmm(test_hmm_c))


def test_the_extension_defines_what_the_patch_calls() -> None:
    source = kmodext.EXTENSION.read_text()
    assert re.search(r"^static int dmirror_evict_pfns\(struct dmirror \*dmirror, "
                     r"struct hmm_dmirror_cmd \*cmd\)$", source, re.M)
    # The compiler checks the same signature the Python side expects.
    assert f'"{kmodext.EXPECTED_PROTOTYPE} "' in source
    assert "int (*)(unsigned long *, unsigned long)" in source
    assert "#ifdef MIGRATE_PFN_DEVICE_PRIVATE\n#error" in source


# -- a staged build


def debian_root(tmp_path: Path, migrate_h: str | None) -> Path:
    """A root with Debian's split headers: the arch directory's Makefile includes -common."""
    root = tmp_path / "root"
    arch = root / "usr/src/linux-headers-7.2.13+deb14-amd64"
    common = root / "usr/src/linux-headers-7.2.13+deb14-common"
    arch.mkdir(parents=True)
    (arch / "Makefile").write_text("KBUILD_OUTPUT=/usr/src/linux-headers-7.2.13+deb14-amd64\n"
                                   "include /usr/src/linux-headers-7.2.13+deb14-common/Makefile\n")
    (common / "include/linux").mkdir(parents=True)
    if migrate_h is not None:
        (common / "include/linux/migrate.h").write_text(migrate_h)
    return root


def staged(tmp_path: Path, test_hmm_c: str, uapi_h: str) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "test_hmm.c").write_text(test_hmm_c)
    (staging / "test_hmm_uapi.h").write_text(uapi_h)
    return staging


def test_debian_headers_lead_to_the_common_migrate_h(tmp_path: Path, migrate_h: str) -> None:
    root = debian_root(tmp_path, migrate_h)
    found = kmodext.find_migrate_header(root, "/usr/src/linux-headers-7.2.13+deb14-amd64")
    assert found == WHERE


def test_staging_is_patched_and_recorded(tmp_path: Path, test_hmm_c: str, uapi_h: str,
                                         migrate_h: str) -> None:
    root = debian_root(tmp_path, migrate_h)
    staging = staged(tmp_path, test_hmm_c, uapi_h)
    record = kmodext.apply_to_staging(staging, root, "/usr/src/linux-headers-7.2.13+deb14-amd64")
    assert record.applied
    assert '#include "test_hmm_evict.c"' in (staging / "test_hmm.c").read_text()
    assert "HMM_DMIRROR_EVICT_PFNS" in (staging / "test_hmm_uapi.h").read_text()
    saved = json.loads((staging / "kmodext.json").read_text())
    assert saved["applied"] is True
    assert saved["ioctl"] == "HMM_DMIRROR_EVICT_PFNS"
    assert saved["ioctl_number"] == 9
    assert saved["migrate_header"] == WHERE
    assert saved["prototype"] == kmodext.EXPECTED_PROTOTYPE


def test_an_old_kernel_stages_the_stock_files(tmp_path: Path, test_hmm_c: str, uapi_h: str,
                                              migrate_h: str) -> None:
    root = debian_root(tmp_path, replaced(migrate_h, RAW_PROTOTYPE, ""))
    staging = staged(tmp_path, test_hmm_c, uapi_h)
    record = kmodext.apply_to_staging(staging, root, "/usr/src/linux-headers-7.2.13+deb14-amd64")
    assert not record.applied
    assert (staging / "test_hmm.c").read_text() == test_hmm_c
    assert (staging / "test_hmm_uapi.h").read_text() == uapi_h
    saved = json.loads((staging / "kmodext.json").read_text())
    assert saved["applied"] is False
    assert "exported since 6.15" in saved["reason"]
    assert saved["ioctl_number"] is None


def test_a_changed_signature_fails_the_build(tmp_path: Path, test_hmm_c: str, uapi_h: str,
                                             migrate_h: str) -> None:
    root = debian_root(tmp_path, replaced(migrate_h, "unsigned long *src_pfns, unsigned long "
                                          "npages);", "unsigned long *src_mpfns, unsigned long "
                                          "npages);"))
    staging = staged(tmp_path, test_hmm_c, uapi_h)
    with pytest.raises(SignatureError, match="src_mpfns"):
        kmodext.apply_to_staging(staging, root, "/usr/src/linux-headers-7.2.13+deb14-amd64")
