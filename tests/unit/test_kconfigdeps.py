"""The Kconfig model that explains dropped options: expressions in tristate logic, block
structure (if, menu, choice, help text), `source`, and the explanations themselves."""

import pytest

from harness import kconfigdeps as k

# Written for these tests after the shape of mm/Kconfig and lib/Kconfig.debug in 7.2: the
# same symbols and dependencies, abridged.
MM = """\
menu "Memory Management options"

config MEMORY_HOTPLUG
\tbool "Memory hotplug"
\tdepends on SPARSEMEM

if MEMORY_HOTPLUG

config MEMORY_HOTREMOVE
\tbool "Memory hot remove"
\tselect MIGRATION

endif # MEMORY_HOTPLUG

config MIGRATION
\tbool
\tdepends on MMU

config ZONE_DEVICE
\tbool "Device memory hotplug"
\tdepends on MEMORY_HOTPLUG
\tdepends on MEMORY_HOTREMOVE
\tdepends on SPARSEMEM_VMEMMAP
\thelp
\t  Text that mentions depends on NOTHING_REAL and
\t  if SOMETHING, which is help, not Kconfig.

config HMM_MIRROR
\tbool
\tdepends on MMU

config DEVICE_PRIVATE
\tbool "Unaddressable device memory"
\tdepends on ZONE_DEVICE

menuconfig TRANSPARENT_HUGEPAGE
\tbool "Transparent Hugepage Support" if HAVE_ARCH_TRANSPARENT_HUGEPAGE && !PREEMPT_RT

endmenu
"""

DEBUG = """\
menuconfig RUNTIME_TESTING_MENU
\tbool "Runtime Testing"
\tdefault y

if RUNTIME_TESTING_MENU

config TEST_HMM
\ttristate "Test HMM"
\tdepends on TRANSPARENT_HUGEPAGE
\tdepends on DEVICE_PRIVATE
\tselect HMM_MIRROR
\tselect MMU_NOTIFIER

endif # RUNTIME_TESTING_MENU

choice
\tprompt "Debug information"
\tdepends on DEBUG_KERNEL

config DEBUG_INFO_NONE
\tbool "None"

config DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT
\tbool "Toolchain default"
\tselect DEBUG_INFO

endchoice
"""


def model():
    m = k.Model()
    k.parse_file(MM, "mm/Kconfig", m)
    k.parse_file(DEBUG, "lib/Kconfig.debug", m)
    return m


@pytest.mark.parametrize("text,values,expected", [
    ("A && B", {"A": "y", "B": "m"}, 1),
    ("A || B", {"A": "n", "B": "m"}, 1),
    ("!A", {"A": "m"}, 1),
    ("!(A && B)", {"A": "y"}, 2),
    ("A = y", {"A": "y"}, 2),
    ("A != n", {"A": "m"}, 2),
    ('STR = "x86"', {"STR": "x86"}, 2),
    ("GCC_VERSION >= 100000", {"GCC_VERSION": "120200"}, 2),
    ("GCC_VERSION < 100000", {"GCC_VERSION": "120200"}, 0),
    ("$(cc-option,-fsanitize=kernel-address) && A", {"A": "y"}, 2),
    ("UNKNOWN", {}, 0),
])
def test_tristate_evaluation(text, values, expected):
    assert k.evaluate(k.parse_expr(text), values) == expected


def test_render_and_conjuncts():
    expr = k.parse_expr("A && (B || C) && !D")
    assert k.render(expr) == "A && (B || C) && !D"
    assert [k.render(c) for c in k.conjuncts(expr)] == ["A", "B || C", "!D"]
    assert k.symbols_in(expr) == ["A", "B", "C", "D"]


def test_bad_expression_is_reported():
    with pytest.raises(k.ExprError):
        k.parse_expr("A && (B")


def test_blocks_help_text_and_selects():
    m = model()
    test_hmm = m.definitions["TEST_HMM"][0]
    assert test_hmm.where == "lib/Kconfig.debug:7"
    assert [c.origin for c in test_hmm.enclosing] == ["if RUNTIME_TESTING_MENU "
                                                       "(lib/Kconfig.debug:5)"]
    assert [k.render(d) for d in test_hmm.depends] == ["TRANSPARENT_HUGEPAGE", "DEVICE_PRIVATE"]
    zone_device = m.definitions["ZONE_DEVICE"][0]
    assert len(zone_device.depends) == 3  # the help text's "depends on" is not one
    assert not m.definitions["HMM_MIRROR"][0].has_prompt
    assert [s.selector for s in m.selected_by["HMM_MIRROR"]] == ["TEST_HMM"]
    assert m.definitions["MEMORY_HOTREMOVE"][0].enclosing[0].origin.startswith(
        "if MEMORY_HOTPLUG")
    members = m.definitions["DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT"][0]
    assert members.choice == "lib/Kconfig.debug:16"


def test_explains_test_hmm_down_the_chain():
    values = {"RUNTIME_TESTING_MENU": "y", "TRANSPARENT_HUGEPAGE": "y", "MEMORY_HOTPLUG": "y",
              "SPARSEMEM_VMEMMAP": "y", "MMU": "y"}
    lines = k.explain("TEST_HMM", "m", values, model())
    assert lines[0] == ("TEST_HMM (lib/Kconfig.debug:7): depends on DEVICE_PRIVATE "
                        "(DEVICE_PRIVATE=n)")
    assert lines[1] == "  DEVICE_PRIVATE (mm/Kconfig:32): depends on ZONE_DEVICE (ZONE_DEVICE=n)"
    assert lines[2] == ("    ZONE_DEVICE (mm/Kconfig:19): depends on MEMORY_HOTREMOVE "
                        "(MEMORY_HOTREMOVE=n)")
    assert lines[3].startswith("      MEMORY_HOTREMOVE (mm/Kconfig:9): its dependencies hold,"
                               " but the config does not ask for it: add "
                               "CONFIG_MEMORY_HOTREMOVE=y")


def test_explains_the_enclosing_if():
    values = {"TRANSPARENT_HUGEPAGE": "y", "DEVICE_PRIVATE": "y"}
    lines = k.explain("TEST_HMM", "m", values, model())
    assert lines[0] == ("TEST_HMM (lib/Kconfig.debug:7): it is inside `if RUNTIME_TESTING_MENU "
                        "(lib/Kconfig.debug:5)`: RUNTIME_TESTING_MENU (RUNTIME_TESTING_MENU=n)")


def test_explains_a_prompt_condition_and_a_select_only_symbol():
    values = {"PREEMPT_RT": "y", "HAVE_ARCH_TRANSPARENT_HUGEPAGE": "y"}
    m = model()
    assert k.explain("TRANSPARENT_HUGEPAGE", "y", values, m)[0].endswith(
        "it has no prompt a config can set and nothing selects it")
    lines = k.explain("HMM_MIRROR", "y", {"MMU": "y"}, m)
    assert "only `select` sets it, from TEST_HMM=n" in lines[0]


def test_unknown_symbol():
    assert "defined in no Kconfig file" in k.explain("NO_SUCH", "y", {}, model())[0]


def test_load_follows_source_with_arch_and_conditions(tmp_path):
    (tmp_path / "Kconfig").write_text('source "arch/$(SRCARCH)/Kconfig"\n'
                                      'if NET\nsource "net/Kconfig"\nendif\n')
    (tmp_path / "arch/x86").mkdir(parents=True)
    (tmp_path / "arch/x86/Kconfig").write_text("config X86\n\tdef_bool y\n"
                                               'rsource "Kconfig.cpu"\n')
    (tmp_path / "arch/x86/Kconfig.cpu").write_text("config X86_CPU\n\tbool \"cpu\"\n")
    (tmp_path / "net").mkdir()
    (tmp_path / "net/Kconfig").write_text("config NET_9P\n\ttristate \"9p\"\n")
    m = k.load(tmp_path)
    assert set(m.definitions) == {"X86", "X86_CPU", "NET_9P"}
    assert m.definitions["X86_CPU"][0].where == "arch/x86/Kconfig.cpu:1"
    assert "inside `if NET (Kconfig:2)`" in k.explain("NET_9P", "y", {}, m)[0]
