"""Pure: the .config a kernel carries inside its bzImage (CONFIG_IKCONFIG).

The bzImage's setup header says where its compressed vmlinux is (payload_offset and
payload_length, boot protocol 2.08+); the vmlinux holds the gzip-compressed config between
the markers IKCFG_ST and IKCFG_ED.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib

START, END = b"IKCFG_ST", b"IKCFG_ED"
SETUP_SECTOR = 512


class NoEmbeddedConfig(ValueError):
    """The image carries no config, or not one this module can unpack; the message says."""


def payload(image: bytes) -> bytes:
    """The compressed vmlinux of a bzImage."""
    if image[0x202:0x206] != b"HdrS":
        raise NoEmbeddedConfig("not a bzImage: no 'HdrS' setup header signature")
    version, = struct.unpack_from("<H", image, 0x206)
    if version < 0x208:
        raise NoEmbeddedConfig(f"boot protocol {version >> 8}.{version & 0xff} is older than "
                               "2.08: the header does not say where the kernel payload is")
    setup_sectors = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sectors + 1) * SETUP_SECTOR + offset
    return image[start:start + length]


def decompress(data: bytes) -> bytes:
    """The payload unpacked, by its magic number."""
    if data.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if data.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    if data.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(data)
    kinds = {b"\x28\xb5\x2f\xfd": "zstd", b"\x02\x21\x4c\x18": "lz4", b"\x89LZO": "lzo"}
    kind = next((name for magic, name in kinds.items() if data.startswith(magic)), "unknown")
    raise NoEmbeddedConfig(f"the kernel payload is {kind}-compressed, which this reader "
                           "cannot unpack (it reads gzip, xz, lzma and bzip2)")


def config_text(image: bytes) -> str:
    vmlinux = decompress(payload(image))
    start = vmlinux.find(START)
    if start < 0:
        raise NoEmbeddedConfig("the kernel was built without CONFIG_IKCONFIG: it carries no "
                               "config")
    end = vmlinux.find(END, start)
    if end < 0:
        raise NoEmbeddedConfig("the embedded config has no end marker")
    return gzip.decompress(vmlinux[start + len(START):end]).decode(errors="replace")
