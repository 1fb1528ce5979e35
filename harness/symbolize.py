"""Pure: stack frames of kernel reports, and where in the source they point.

A kernel report names each frame as `func+0x4ad/0xb20 [test_hmm]`: the function, the offset
in it and the function's length (from kallsyms), and the module (none for vmlinux). Turning
that into file:line takes the object's symbol table (where `func` starts) and its DWARF
(which line an address belongs to). This module parses frames, symbol tables and addr2line's
output and words the result; `harness.debuginfo` finds the files and runs addr2line.
"""

from __future__ import annotations

import itertools
import mmap
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

VMLINUX = "vmlinux"

# `func+0x4ad/0xb20`, `func+0x4ad/0xb20 [mod]` or `[mod BUILDID]`, after the start of a
# call-trace line (`? ` marks a guess of the unwinder), `RIP: 0010:` or a WARNING's ` at `.
_FRAME = re.compile(
    r"(?:^\s*(?P<guess>\? )?|RIP: [0-9a-f]{4}:|\bat )"
    r"(?P<symbol>[A-Za-z_.$][\w.$]*)\+0x(?P<offset>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?: \[(?P<module>[\w-]+)(?: [0-9a-f]+)?\])?")
_DISCRIMINATOR = re.compile(r"\s*\(discriminator \d+\)$")
# Paths the DWARF holds, and how a kernel developer knows them. Module builds see the kernel's
# headers at /usr/src/linux-headers-RELEASE[-common]/; Debian's vmlinux names its sources
# debian/build/build_amd64_none_amd64/mm/memremap.c, other builds .../linux-VERSION/mm/...
_SOURCE_PREFIXES = (
    re.compile(r"^/usr/src/linux-headers-[^/]+/"),
    re.compile(r"^(?:.*/)?debian/build/build_[^/]+/"),
    re.compile(r"^.*/linux-[0-9][^/]*/"),
    re.compile(r"^\./"),
)


@dataclass(frozen=True)
class Frame:
    symbol: str
    offset: int
    size: int
    module: str | None  # None: vmlinux
    # rip: the faulting instruction (RIP: line, or a WARNING's `at`); call: a return address
    # on the stack; guess: a `?` frame, a stale return address the unwinder could not vouch for
    kind: str

    @property
    def object_name(self) -> str:
        return self.module or VMLINUX

    @property
    def text(self) -> str:
        module = f" [{self.module}]" if self.module else ""
        mark = "? " if self.kind == "guess" else "RIP " if self.kind == "rip" else ""
        return f"{mark}{self.symbol}+{self.offset:#x}/{self.size:#x}{module}"

    @property
    def lookup_offset(self) -> int:
        """The offset whose line to report: a return address is the instruction after the
        call, so its call site is one byte earlier (as gdb and llvm-symbolizer do it)."""
        return self.offset if self.kind == "rip" or self.offset == 0 else self.offset - 1


def parse_frame(line: str) -> Frame | None:
    """The frame a console line names, if any (user-space `RIP: 0033:0x7f..` names none)."""
    match = _FRAME.search(line)
    if match is None:
        return None
    if match.group("guess"):
        kind = "guess"
    elif line.lstrip().startswith(("RIP:", "WARNING:")):
        kind = "rip"
    else:
        kind = "call"
    return Frame(symbol=match.group("symbol"), offset=int(match.group("offset"), 16),
                 size=int(match.group("size"), 16), module=match.group("module"), kind=kind)


def frames_in(lines: Iterable[str], limit: int = 100) -> list[Frame]:
    """Each distinct frame of `lines` once, in order of first appearance: a report that
    repeats (the same WARN a hundred times) is decoded once. `__pfx_` symbols are the padding
    before a function (stale `?` frames point there); they have no line of their own."""
    seen: dict[Frame, None] = {}
    for line in lines:
        frame = parse_frame(line)
        if frame is not None and frame not in seen and not frame.symbol.startswith("__pfx_"):
            seen[frame] = None
            if len(seen) >= limit:
                break
    return list(seen)


@dataclass(frozen=True)
class Symbol:
    """Where a function starts in an object file: an address (vmlinux) or an offset in a
    section (a module, which is a relocatable object)."""

    name: str
    address: int
    size: int
    section: str | None = None


def parse_system_map(text: str) -> dict[str, list[Symbol]]:
    """Text symbols of System.map. It has no sizes; as kallsyms does, a symbol's size is the
    distance to the next address, which is what a report's `/0xb20` says."""
    entries: list[tuple[int, str, bool]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and len(parts[1]) == 1:
            entries.append((int(parts[0], 16), parts[2], parts[1] in "tTwW"))
    addresses = sorted({address for address, _, _ in entries})
    following = dict(itertools.pairwise(addresses))
    table: dict[str, list[Symbol]] = {}
    for address, name, is_text in entries:
        if is_text:
            size = following.get(address, address) - address
            table.setdefault(name, []).append(Symbol(name, address, size))
    return table


_ELF_SHT_SYMTAB = 2
_ELF_STT_FUNC = 2


def parse_elf_functions(elf: bytes | mmap.mmap) -> dict[str, list[Symbol]]:
    """Function symbols of an x86-64 ELF file's .symtab, each with its section's name (for a
    relocatable .ko, where every section starts at 0). `elf` may be a mmap of a large
    vmlinux: only the section headers and the symbol and string tables are read."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
               for i in range(shnum)]

    def string(table: int, index: int) -> str:
        start = headers[table][4] + index
        return elf[start:elf.find(b"\0", start)].decode(errors="replace")

    section_names = [string(shstrndx, h[0]) for h in headers]
    table: dict[str, list[Symbol]] = {}
    for header in headers:
        if header[1] != _ELF_SHT_SYMTAB:
            continue
        offset, size, strtab, entsize = header[4], header[5], header[6], header[9]
        for start in range(offset, offset + size, entsize):
            name_index, info, _other, shndx, value, sym_size = struct.unpack_from(
                "<IBBHQQ", elf, start)
            if info & 0xF != _ELF_STT_FUNC or not 0 < shndx < len(headers):
                continue
            name = string(strtab, name_index)
            table.setdefault(name, []).append(
                Symbol(name, value, sym_size, section_names[shndx]))
    return table


def choose_symbol(candidates: list[Symbol], size: int) -> Symbol | None:
    """Several static functions can share a name: the report's length picks one."""
    if not candidates:
        return None
    return min(candidates, key=lambda s: (abs(s.size - size), s.address))


def parse_addr2line(text: str) -> dict[int, list[tuple[str, str]]]:
    """`addr2line -a -f -i -p` output: for each address, (function, file:line) pairs,
    innermost first. An address starts an entry (`0x...131d: f at x.c:12`); the lines of
    inlined callers follow as ` (inlined by) g at y.c:34`. An address addr2line knows nothing
    of (`?? ??:0`) gets no pair."""
    results: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        address, colon, rest = line.partition(": ")
        if colon and re.fullmatch(r"0x[0-9a-f]+", address):
            current = results.setdefault(int(address, 16), [])
            line = rest
        elif current is None:
            continue
        line = _DISCRIMINATOR.sub("", line.removeprefix("(inlined by) "))
        if line.startswith("?? ??:"):  # addr2line knows nothing of this address
            continue
        function, _, location = line.partition(" at ")
        current.append((function.strip(), location.strip()))
    return results


def source_path(path: str, prefixes: dict[str, str]) -> str:
    """A DWARF path as a kernel developer knows it: mm/memremap.c, include/linux/mm.h,
    lib/test_hmm.c. `prefixes` maps build directories (/hmm/build/) to what they hold."""
    for prefix, replacement in sorted(prefixes.items(), key=lambda p: -len(p[0])):
        if path.startswith(prefix):
            return replacement + path[len(prefix):]
    for pattern in _SOURCE_PREFIXES:
        shorter = pattern.sub("", path, count=1)
        if shorter != path:
            return shorter
    return path


def describe(frame: Frame, lines: list[tuple[str, str]], prefixes: dict[str, str]) -> str:
    """One decoded frame: `func+0x4ad/0xb20 [mod]: f at lib/x.c:12, inlined by g at ...`."""
    places = []
    for function, location in lines:
        file, _, number = location.rpartition(":")
        where = f"{source_path(file, prefixes)}:{number}" if file and file != "??" else "??"
        places.append(f"{function} at {where}")
    return f"{frame.text}: {', inlined by '.join(places) or 'no line information'}"
