"""The project's config fragments: every line has a reason, they merge in order, and a
configured .config (the real result of `make allnoconfig` with base.config on the Debian 7.2
source) is checked against them, naming what was dropped and why."""

import pytest

from harness import fragment, kconfig, kconfigdeps
from harness.errors import KernelConfigError, UsageError


@pytest.fixture
def built_config(data_dir):
    return kconfig.parse((data_dir / "config-7.2.13-harness-base").read_text())


def test_project_fragments_parse_with_reasons():
    base = fragment.load([fragment.BASE])
    assert all(item.reason for item in base)
    options = {item.option: item.value for item in base}
    assert options["CONFIG_TEST_HMM"] == "m"
    assert options["CONFIG_9P_FS"] == "y"
    debug = fragment.load([fragment.BASE, fragment.DEBUG])
    assert {item.option for item in debug} >= {"CONFIG_KASAN", "CONFIG_DEBUG_VM",
                                               "CONFIG_PROVE_LOCKING", "CONFIG_DEBUG_PAGEALLOC"}


def test_fragment_covers_what_every_kernel_needs():
    wanted = {item.option: item.value for item in fragment.load([fragment.BASE])}
    for requirement in (*kconfig.REQUIRED, *kconfig.GUEST_REQUIRED):
        assert wanted.get(requirement.option) in requirement.accepted, requirement.option


def test_real_configured_tree_keeps_every_option(built_config):
    assert fragment.check(fragment.load([fragment.BASE]), built_config) == []
    assert kconfig.missing(built_config, kconfig.GUEST_REQUIRED) == []
    assert kconfig.missing(built_config) == []


def test_later_fragment_wins_and_order_is_kept():
    first = fragment.parse("CONFIG_A=y  # a\nCONFIG_B=m  # b\n", "one")
    second = fragment.parse("# CONFIG_A is not set  # off again\nCONFIG_C=\"x y\"  # c\n", "two")
    merged = fragment.merge([first, second])
    assert [(w.option, w.value, w.where) for w in merged] == [
        ("CONFIG_A", "n", "two:1"), ("CONFIG_B", "m", "one:2"), ("CONFIG_C", "x y", "two:2")]
    assert fragment.render(merged) == ('# CONFIG_A is not set\nCONFIG_B=m\n'
                                       'CONFIG_C="x y"\n')


@pytest.mark.parametrize("line", ["CONFIG_A=y", "# CONFIG_A is not set", "CONFIG A = y  # x"])
def test_lines_without_reason_or_malformed_are_refused(line):
    with pytest.raises(UsageError) as error:
        fragment.parse(f"# comment\n{line}\n", "frag.config")
    assert "frag.config:2" in error.value.problem
    assert error.value.fix


KCONFIG = """\
menuconfig RUNTIME_TESTING_MENU
\tbool "Runtime Testing"

if RUNTIME_TESTING_MENU
config TEST_HMM
\ttristate "Test HMM"
\tdepends on TRANSPARENT_HUGEPAGE
\tdepends on DEVICE_PRIVATE
endif
"""


def test_dropped_option_is_named_with_its_dependency(built_config):
    model = kconfigdeps.Model()
    kconfigdeps.parse_file(KCONFIG, "lib/Kconfig.debug", model)
    config = dict(built_config, CONFIG_DEVICE_PRIVATE="n", CONFIG_TEST_HMM="n")
    wanted = fragment.load([fragment.BASE])
    dropped = fragment.check(wanted, config)
    assert [(d.wanted.option, d.got) for d in dropped] == [("CONFIG_DEVICE_PRIVATE", "n"),
                                                           ("CONFIG_TEST_HMM", "n")]
    with pytest.raises(KernelConfigError) as error:
        fragment.require(wanted, config, "the tree /src", model)
    message = error.value.problem
    assert "configuring the tree /src dropped options" in message
    assert "CONFIG_TEST_HMM=m (vm-images/kconfig/base.config:" in message
    assert "TEST_HMM (lib/Kconfig.debug:5): depends on DEVICE_PRIVATE (DEVICE_PRIVATE=n)" \
        in message
    assert "DEVICE_PRIVATE is defined in no Kconfig file" in message
