"""Pure readers: a module's .modinfo section and a bzImage's version string."""

from __future__ import annotations

import struct

from harness.errors import ModuleMismatchError


def module_info(elf: bytes) -> dict[str, str]:
    """key=value pairs of the .modinfo section of an x86-64 ELF module."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ModuleMismatchError("not a 64-bit ELF file, so not a kernel module for x86-64")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + index * shentsize)
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name_index, offset, size = section(index)
        end = elf.index(b"\0", names_offset + name_index)
        if elf[names_offset + name_index:end] == b".modinfo":
            info: dict[str, str] = {}
            for entry in elf[offset:offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
            return info
    raise ModuleMismatchError("the file has no .modinfo section, so it is not a kernel module")


def bzimage_release(image: bytes) -> str:
    """The release (`uname -r`) a bzImage reports in its setup header."""
    if image[0x202:0x206] != b"HdrS":
        raise ModuleMismatchError("not a bzImage: no 'HdrS' setup header signature")
    version_offset, = struct.unpack_from("<H", image, 0x20E)
    start = 0x200 + version_offset
    text = image[start:image.index(b"\0", start)].decode(errors="replace")
    return text.split()[0]


def check_vermagic(module_vermagic: str, kernel_vermagic: str, module_name: str) -> None:
    """The module loads only if its vermagic equals the kernel's (modulo trailing space)."""
    if module_vermagic.strip() != kernel_vermagic.strip():
        raise ModuleMismatchError(
            f"{module_name} was built for '{module_vermagic.strip()}' but the kernel expects "
            f"'{kernel_vermagic.strip()}'",
            "rebuild the module against this kernel's headers (drop --module to let the "
            "harness build it)")
