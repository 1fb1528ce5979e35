"""vermagic and bzImage release, read from a real Debian module and kernel image header."""

import lzma

import pytest

from harness import modinfo
from harness.errors import ModuleMismatchError


def test_vermagic_of_a_debian_module(data_dir):
    info = modinfo.module_info(lzma.decompress((data_dir / "9pnet.ko.xz").read_bytes()))
    assert info["vermagic"].startswith("7.2.13+deb14-amd64 SMP preempt mod_unload")
    assert info["name"] == "9pnet"


def test_release_from_bzimage_header(data_dir):
    head = (data_dir / "vmlinuz-7.2.13+deb14-amd64.head").read_bytes()
    assert modinfo.bzimage_release(head) == "7.2.13+deb14-amd64"


def test_non_modules_are_rejected(data_dir):
    with pytest.raises(ModuleMismatchError, match="not a 64-bit ELF"):
        modinfo.module_info(b"#!/bin/sh\n")
    with pytest.raises(ModuleMismatchError, match="not a bzImage"):
        modinfo.bzimage_release(b"\0" * 4096)


def test_vermagic_mismatch_names_both_sides():
    with pytest.raises(ModuleMismatchError) as error:
        modinfo.check_vermagic("7.2.99 SMP preempt mod_unload ",
                               "7.2.13+deb14-amd64 SMP preempt mod_unload ", "test_hmm.ko")
    assert "7.2.99" in str(error.value) and "7.2.13+deb14-amd64" in str(error.value)
    modinfo.check_vermagic("7.2.13 SMP ", "7.2.13 SMP", "test_hmm.ko")
