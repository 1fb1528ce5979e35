"""Kernel config checks, fed with the real config of the Debian sid 7.2 kernel."""

import pytest

from harness import kconfig
from harness.errors import KernelConfigError


@pytest.fixture
def debian_config(data_dir):
    return (data_dir / "config-7.2.13+deb14-amd64").read_text()


def test_debian_sid_kernel_has_everything(debian_config):
    options = kconfig.parse(debian_config)
    assert kconfig.missing(options) == []
    kconfig.require(options, "sid")
    checked = kconfig.checked_values(options)
    assert checked["CONFIG_DEVICE_PRIVATE"] == "y"
    assert checked["CONFIG_TEST_HMM"] == "n"  # "# ... is not set"
    assert checked["CONFIG_NET_9P_VIRTIO"] == "m"


def test_missing_options_are_all_named(debian_config):
    text = debian_config.replace("CONFIG_DEVICE_PRIVATE=y", "# CONFIG_DEVICE_PRIVATE is not set")
    text = text.replace("CONFIG_TRANSPARENT_HUGEPAGE=y\n", "")
    with pytest.raises(KernelConfigError) as error:
        kconfig.require(kconfig.parse(text), "under test")
    message = str(error.value)
    assert "CONFIG_DEVICE_PRIVATE=n" in message
    assert "CONFIG_TRANSPARENT_HUGEPAGE=n" in message
    assert "CONFIG_ZONE_DEVICE" not in message.split("fix:")[0]


def test_quoted_values_are_unquoted():
    assert kconfig.parse('CONFIG_LOCALVERSION="-hmm"\n')["CONFIG_LOCALVERSION"] == "-hmm"


def test_compiler_of_the_debian_kernel(debian_config):
    assert kconfig.compiler(kconfig.parse(debian_config)) == "x86_64-linux-gnu-gcc-16"
    assert kconfig.compiler({}) == "gcc"
