"""The project's test_hmm extension, kmod/test_hmm_evict.c (HMM_DMIRROR_EVICT_PFNS).

Whether a kernel takes it is decided from the kernel headers' include/linux/migrate.h:
- no migrate_device_pfns() (before 6.15): test_hmm is built as the kernel ships it, and
  the build records why;
- the expected raw-pfn prototype: the extension goes in;
- anything else, including the migrate-pfn series (same C type, other meaning): the build
  fails with a SignatureError naming the signature, rather than pass the wrong pfns.
The compiler checks the same again (static_assert and #error in kmod/test_hmm_evict.c).

Hooking it in takes two anchored, purely additive edits of the kernel's own files: an
#include of the extension and one `case` in dmirror_fops_unlocked_ioctl() in test_hmm.c,
and a #define numbered after the kernel's highest ioctl in test_hmm_uapi.h. A missing
anchor raises ExtensionError. Everything here is pure text processing except
find_migrate_header() and apply_to_staging(), which read and write the files.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import PROJECT_ROOT

EXTENSION = PROJECT_ROOT / "kmod" / "test_hmm_evict.c"
# What the output of apply_to_staging() depends on, besides the kernel.
INPUTS = (EXTENSION, Path(__file__))
RECORD_NAME = "kmodext.json"  # in the build directory, /hmm/build in the guest
RECORD_FORMAT = 1

IOCTL = "HMM_DMIRROR_EVICT_PFNS"
HANDLER = "dmirror_evict_pfns"
FUNCTION = "migrate_device_pfns"
EXPECTED_PROTOTYPE = "int migrate_device_pfns(unsigned long *src_pfns, unsigned long npages)"
# What migrate.h gains with "mm: Remove device private pages from the physical address
# space" (Jordan Niethe, v1 to v5 on linux-mm, 2025-2026). Its patch 03 makes
# migrate_device_{pfns,range}() take migrate-pfns without touching the prototype, between
# patch 01 (migrate_pfn_from_page()) and patch 04 (MIGRATE_PFN_DEVICE_PRIVATE).
SERIES = "'mm: Remove device private pages from the physical address space'"
MIGRATE_PFN_MARKERS = {
    "migrate_pfn_from_page": f"migrate_pfn_from_page(), from patch 01 of {SERIES}",
    "MIGRATE_PFN_DEVICE_PRIVATE": f"MIGRATE_PFN_DEVICE_PRIVATE, from patch 04 of {SERIES}",
}
FIX_SIGNATURE = ("teach kmod/test_hmm_evict.c the new convention, then update "
                 "EXPECTED_PROTOTYPE and MIGRATE_PFN_MARKERS in harness/kmodext.py")
FIX_ANCHOR = ("this test_hmm.c differs from the ones the extension knows (6.15 to 7.2): "
              "update the anchors in harness/kmodext.py")


class ExtensionError(HarnessError):
    """kmod/test_hmm_evict.c cannot be hooked into this kernel's test_hmm."""


class SignatureError(ExtensionError):
    """The kernel's migrate_device_pfns() is not the one the extension is written for."""


@dataclass(frozen=True)
class Decision:
    applied: bool
    reason: str
    prototype: str | None = None  # as the header declares it, whitespace collapsed


# ---------------------------------------------------------------------------------------
# Reading migrate.h

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DIRECTIVES = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.M)
_STORAGE = re.compile(r"\b(?:extern|static|inline|__always_inline)\b")


def _code(text: str) -> str:
    """C text without comments and preprocessor lines."""
    return _DIRECTIVES.sub("", _COMMENTS.sub(" ", text))


def _tokens(declaration: str) -> str:
    """A form where spacing does not matter: `unsigned long *x` == `unsigned long* x`."""
    spaced = re.sub(r"\s*([(),*])\s*", r" \1 ", declaration)
    return " ".join(_STORAGE.sub(" ", spaced).split())


def declarations(header: str, name: str = FUNCTION) -> list[str]:
    """Declarations (or inline definitions) of `name` in a header, whitespace collapsed."""
    code = _code(header)
    found = []
    for match in re.finditer(rf"\b{re.escape(name)}\s*\(", code):
        start = max(code.rfind(c, 0, match.start()) for c in ";{}") + 1
        prefix = " ".join(code[start:match.start()].split())
        words = prefix.replace("*", " ").split()
        if not words or words[-1] in ("return", "=") or "=" in prefix or "(" in prefix:
            continue  # a call, not a declaration
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(code)):
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            if depth == 0:
                break
        found.append(" ".join(code[start:end + 1].split()))
    return found


def decide(migrate_h: str | None, where: str) -> Decision:
    """Whether the extension goes in, from the text of migrate.h found at `where`."""
    if migrate_h is None:
        return Decision(False, f"no include/linux/migrate.h in the kernel headers ({where}): "
                               f"whether the kernel has {FUNCTION}() is unknown")
    found = declarations(migrate_h)
    if not found:
        return Decision(False, f"{where} declares no {FUNCTION}() (exported since 6.15), "
                               f"so test_hmm is built without {IOCTL}")
    for declared in found:
        if _tokens(declared) != _tokens(EXPECTED_PROTOTYPE):
            raise SignatureError(
                f"{where} declares `{declared}`; kmod/test_hmm_evict.c is written for "
                f"`{EXPECTED_PROTOTYPE}` taking raw pfns (6.15 to 7.2)", FIX_SIGNATURE)
    uncommented = _COMMENTS.sub(" ", migrate_h)
    for marker, what in MIGRATE_PFN_MARKERS.items():
        if re.search(rf"\b{marker}\b", uncommented):
            raise SignatureError(
                f"{where} declares `{found[0]}` but also {what}: with that series "
                f"{FUNCTION}() takes migrate-pfns (src_pfns encoded with migrate_pfn()) instead "
                f"of the raw pfns kmod/test_hmm_evict.c passes", FIX_SIGNATURE)
    return Decision(True, f"{where} declares `{found[0]}`", found[0])


# ---------------------------------------------------------------------------------------
# Editing test_hmm_uapi.h and test_hmm.c

_IOCTL_DEFINE = re.compile(
    r"^#define[ \t]+(HMM_DMIRROR_\w+)[ \t]+_IOWR\([ \t]*'H'[ \t]*,[ \t]*(0x[0-9a-fA-F]+|\d+)"
    r"[ \t]*,[ \t]*struct hmm_dmirror_cmd[ \t]*\)[^\n]*\n", re.M)


def ioctl_numbers(uapi_h: str) -> dict[str, int]:
    """The header's HMM_DMIRROR_* ioctl names and their numbers."""
    return {m[1]: int(m[2], 0) for m in _IOCTL_DEFINE.finditer(uapi_h)}


def patch_uapi_header(uapi_h: str) -> tuple[str, int]:
    """The header with IOCTL defined after its last ioctl, numbered after its highest."""
    if re.search(rf"\b{IOCTL}\b", uapi_h):
        raise ExtensionError(f"test_hmm_uapi.h already defines {IOCTL}: the kernel has its "
                             "own ioctl of that name", FIX_ANCHOR)
    defines = list(_IOCTL_DEFINE.finditer(uapi_h))
    if not defines:
        raise ExtensionError("test_hmm_uapi.h has no `#define HMM_DMIRROR_... _IOWR('H', N, "
                             "struct hmm_dmirror_cmd)` to number the new ioctl after",
                             FIX_ANCHOR)
    number = max(int(m[2], 0) for m in defines) + 1
    if number > 0xFF:
        raise ExtensionError(f"test_hmm_uapi.h uses every ioctl number up to 0xff; none is "
                             f"left for {IOCTL}", FIX_ANCHOR)
    addition = ("/* hmm-harness (kmod/test_hmm_evict.c): evict the selected pages of the "
                "range with migrate_device_pfns() */\n"
                f"#define {IOCTL}\t_IOWR('H', {number:#04x}, struct hmm_dmirror_cmd)\n")
    at = defines[-1].end()
    return uapi_h[:at] + addition + uapi_h[at:], number


_IOCTL_FUNCTION = re.compile(r"^static long dmirror_fops_unlocked_ioctl\s*\(", re.M)
_FUNCTION_END = re.compile(r"^}[ \t]*$", re.M)
_LOCALS = {
    "cmd": re.compile(r"\bstruct hmm_dmirror_cmd\s+cmd\s*;"),
    "dmirror": re.compile(r"\bstruct dmirror\s*\*\s*dmirror\s*;"),
    "ret": re.compile(r"\b(?:int|long)\s+ret\s*;"),
}
_SWITCH = re.compile(r"\bswitch\s*\(\s*command\s*\)\s*\{")
_FIRST_CASE = re.compile(r"^([ \t]*)case\s+HMM_DMIRROR_\w+\s*:", re.M)


def patch_test_hmm(test_hmm_c: str) -> str:
    """test_hmm.c with the extension #included before dmirror_fops_unlocked_ioctl() and a
    case for IOCTL before the default label of that function's switch; nothing removed."""
    def missing(what: str) -> ExtensionError:
        return ExtensionError(f"test_hmm.c: {what}; the extension has no place to go",
                              FIX_ANCHOR)

    if re.search(rf"\b{HANDLER}\b", test_hmm_c):
        raise ExtensionError(f"test_hmm.c already has a {HANDLER}", FIX_ANCHOR)
    functions = list(_IOCTL_FUNCTION.finditer(test_hmm_c))
    if len(functions) != 1:
        raise missing(f"{len(functions)} definitions of `static long "
                      "dmirror_fops_unlocked_ioctl(` at the start of a line, not one")
    begin = functions[0].start()
    end_match = _FUNCTION_END.search(test_hmm_c, begin)
    if end_match is None:
        raise missing("no `}` line ends dmirror_fops_unlocked_ioctl()")
    body = test_hmm_c[begin:end_match.start()]
    for name, declared in _LOCALS.items():
        if not declared.search(body):
            raise missing(f"dmirror_fops_unlocked_ioctl() has no local `{name}` "
                          f"({declared.pattern})")
    switches = list(_SWITCH.finditer(body))
    if len(switches) != 1:
        raise missing(f"dmirror_fops_unlocked_ioctl() has {len(switches)} "
                      "`switch (command) {`, not one")
    first_case = _FIRST_CASE.search(body, switches[0].end())
    if first_case is None:
        raise missing("no `case HMM_DMIRROR_...:` after `switch (command) {`")
    indent = first_case[1]
    default = re.compile(rf"^{re.escape(indent)}default\s*:", re.M).search(body,
                                                                           first_case.end())
    if default is None:
        raise missing("no `default:` label level with the switch's cases")

    case = (f"{indent}case {IOCTL}:\t/* hmm-harness: kmod/test_hmm_evict.c */\n"
            f"{indent}\tret = {HANDLER}(dmirror, &cmd);\n"
            f"{indent}\tbreak;\n\n")
    include = ("/* hmm-harness (harness/kmodext.py): the HMM_DMIRROR_EVICT_PFNS handler */\n"
               f'#include "{EXTENSION.name}"\n\n')
    at_default = begin + default.start()
    return (test_hmm_c[:begin] + include + test_hmm_c[begin:at_default] + case
            + test_hmm_c[at_default:])


# ---------------------------------------------------------------------------------------
# Applying it to a build


@dataclass(frozen=True)
class Record:
    """What the build directory's kmodext.json says; the guest reads it to explain skips."""

    applied: bool
    reason: str
    ioctl: str = IOCTL
    ioctl_number: int | None = None
    migrate_header: str | None = None  # inside the build root
    prototype: str | None = None
    extension: str = f"kmod/{EXTENSION.name}"
    format: int = RECORD_FORMAT


@dataclass(frozen=True)
class Patched:
    test_hmm_c: str
    uapi_h: str
    record: Record


def apply(test_hmm_c: str, uapi_h: str, migrate_h: str | None, where: str) -> Patched:
    """The staged files as they are built, given migrate.h's text (None: not found)."""
    decision = decide(migrate_h, where)
    if not decision.applied:
        return Patched(test_hmm_c, uapi_h, Record(False, decision.reason, migrate_header=where))
    patched_uapi, number = patch_uapi_header(uapi_h)
    return Patched(patch_test_hmm(test_hmm_c), patched_uapi,
                   Record(True, decision.reason, ioctl_number=number, migrate_header=where,
                          prototype=decision.prototype))


def _makefile_includes(makefile: Path) -> list[str]:
    try:
        text = makefile.read_text()
    except OSError:
        return []
    return [m[1] for m in re.finditer(r"^include[ \t]+(\S+)/Makefile[ \t]*$", text, re.M)]


def find_migrate_header(root: Path, headers_in_root: str) -> str | None:
    """Where include/linux/migrate.h is, as a path inside `root`: in the headers directory,
    its `source` link, or (Debian's split packages) the tree its Makefile includes."""
    headers = headers_in_root.rstrip("/")
    candidates = [headers, f"{headers}/source"]
    candidates += _makefile_includes(root / headers.lstrip("/") / "Makefile")
    for directory in candidates:
        inside = f"{directory}/include/linux/migrate.h"
        if (root / inside.lstrip("/")).is_file():
            return inside
    return None


def apply_to_staging(staging: Path, root: Path, headers_in_root: str) -> Record:
    """Edit the staged test_hmm.c and test_hmm_uapi.h (or leave them, saying why in
    kmodext.json); the staged kmod/test_hmm_evict.c sits beside them."""
    inside = find_migrate_header(root, headers_in_root)
    migrate_h = None if inside is None else (root / inside.lstrip("/")).read_text()
    where = inside or f"{headers_in_root}/include/linux/migrate.h"
    test_hmm, uapi = staging / "test_hmm.c", staging / "test_hmm_uapi.h"
    patched = apply(test_hmm.read_text(), uapi.read_text(), migrate_h, where)
    test_hmm.write_text(patched.test_hmm_c)
    uapi.write_text(patched.uapi_h)
    (staging / RECORD_NAME).write_text(json.dumps(asdict(patched.record), indent=2) + "\n")
    return patched.record
