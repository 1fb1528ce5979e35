"""The config inside a bzImage (CONFIG_IKCONFIG), from images put together as the kernel's
build lays them out: setup sectors, then the compressed vmlinux where the header says."""

import gzip
import lzma
import struct

import pytest

from harness import ikconfig

CONFIG = "CONFIG_DEVICE_PRIVATE=y\nCONFIG_TEST_HMM=m\n"


def bzimage(compressed: bytes, setup_sectors: int = 3, protocol: int = 0x20F) -> bytes:
    header = bytearray(b"\0" * ((setup_sectors + 1) * 512))
    header[0x1F1] = setup_sectors
    header[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", header, 0x206, protocol)
    offset = 0x40  # payload_offset: from the start of the protected-mode code
    struct.pack_into("<II", header, 0x248, offset, len(compressed))
    return bytes(header) + b"\x90" * offset + compressed + b"\0" * 16


def vmlinux(with_config: bool = True) -> bytes:
    blob = ikconfig.START + gzip.compress(CONFIG.encode()) + ikconfig.END if with_config else b""
    return b"\x7fELF" + b"code" * 100 + blob + b"more code"


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress])
def test_config_from_gzip_and_xz_images(compress):
    assert ikconfig.config_text(bzimage(compress(vmlinux()))) == CONFIG


def test_kernel_without_ikconfig():
    with pytest.raises(ikconfig.NoEmbeddedConfig, match="without CONFIG_IKCONFIG"):
        ikconfig.config_text(bzimage(gzip.compress(vmlinux(with_config=False))))


def test_zstd_payload_is_named():
    with pytest.raises(ikconfig.NoEmbeddedConfig, match="zstd-compressed"):
        ikconfig.config_text(bzimage(b"\x28\xb5\x2f\xfd" + b"\0" * 64))


def test_not_a_bzimage_and_old_protocol():
    with pytest.raises(ikconfig.NoEmbeddedConfig, match="not a bzImage"):
        ikconfig.config_text(b"\0" * 4096)
    with pytest.raises(ikconfig.NoEmbeddedConfig, match=r"older than 2\.08"):
        ikconfig.config_text(bzimage(gzip.compress(vmlinux()), protocol=0x206))



def test_real_debian_image_header_says_where_its_payload_is(data_dir):
    """The captured head of Debian's 7.2 vmlinuz: 39 setup sectors, payload 716 bytes in."""
    head = (data_dir / "vmlinuz-7.2.13+deb14-amd64.head").read_bytes()
    start = 40 * 512 + 716
    padded = head + b"\0" * (start - len(head)) + b"\x28\xb5\x2f\xfd" + b"\0" * 64
    assert ikconfig.payload(padded)[:4] == b"\x28\xb5\x2f\xfd"
    with pytest.raises(ikconfig.NoEmbeddedConfig, match="zstd-compressed"):
        ikconfig.config_text(padded)
