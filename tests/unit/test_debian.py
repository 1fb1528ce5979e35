"""Kernel choice and apt configuration, fed with real `apt-cache pkgnames` output from sid."""

import io
import subprocess

import pytest

from harness import archive, debian
from harness.commands import CommandRunner
from harness.errors import KernelNotFoundError, UsageError


def test_generic_releases_only_newest_first(data_dir):
    names = (data_dir / "sid-pkgnames-linux-binary.txt").read_text().split()
    assert debian.releases_from_pkgnames(names) == ["7.2.13+deb14-amd64"]


def test_newer_release_sorts_first_and_rc_below_release():
    names = ["linux-binary-7.2.13+deb14-amd64", "linux-binary-7.3.1+deb14-amd64",
             "linux-binary-7.3.0-rc7+deb14-amd64", "linux-binary-7.2.9+deb14-amd64"]
    assert debian.releases_from_pkgnames(names) == [
        "7.3.1+deb14-amd64", "7.3.0-rc7+deb14-amd64", "7.2.13+deb14-amd64",
        "7.2.9+deb14-amd64"]


def test_pinned_release_is_used_when_available():
    release, why = debian.choose_release(debian.DEFAULT_KERNEL, ["7.3.1+deb14-amd64",
                                                                 debian.PINNED_RELEASE])
    assert release == debian.PINNED_RELEASE
    assert "pinned" in why


def test_vanished_pin_falls_back_to_newest_and_says_so():
    release, why = debian.choose_release(debian.DEFAULT_KERNEL, ["7.4.2+deb14-amd64"])
    assert release == "7.4.2+deb14-amd64"
    assert "gone" in why and debian.PINNED_RELEASE in why


def test_no_kernel_at_all_is_an_error():
    with pytest.raises(KernelNotFoundError, match="no amd64 kernel"):
        debian.choose_release(debian.DebianKernelSpec("sid", None), [])


@pytest.mark.parametrize("text,expected", [
    ("sid", debian.DebianKernelSpec("sid", None)),
    ("experimental", debian.DebianKernelSpec("experimental", None)),
    ("7.2.13+deb14-amd64", debian.DebianKernelSpec("sid", "7.2.13+deb14-amd64")),
    ("experimental:7.3.0-rc7+deb14-amd64",
     debian.DebianKernelSpec("experimental", "7.3.0-rc7+deb14-amd64")),
])
def test_parse_spec(text, expected):
    assert debian.parse_debian_spec(text) == expected


@pytest.mark.parametrize("text", ["unstable-ish", "nosuch:7.2.13+deb14-amd64", "7.2"])
def test_bad_spec_names_the_problem(text):
    with pytest.raises(UsageError) as error:
        debian.parse_debian_spec(text)
    assert error.value.fix


def test_packages_of_a_split_kernel():
    packages = debian.KernelPackages("7.2.13+deb14-amd64")
    assert packages.image == "linux-binary-7.2.13+deb14-amd64"
    assert packages.source == "linux-source-7.2"
    assert packages.headers in packages.for_guest_root()


def test_private_apt_config_keeps_state_out_of_the_host():
    conf, sources = debian.apt_config("/cache/apt", "http://mirror/debian", ["sid"])
    assert 'Dir::State::Lists "/cache/apt/lists";' in conf
    assert 'Dir::State::status "/dev/null";' in conf
    assert 'Acquire::Check-Valid-Until "false";' in conf
    assert sources == ("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                       "http://mirror/debian sid main\n")
    assert debian.suites_for("experimental") == ["sid", "experimental"]


def test_apt_show_version():
    assert debian.parse_apt_show_version("Package: x\nVersion: 7.2.13-1\nSize: 3\n") == "7.2.13-1"


def test_one_file_is_read_from_a_real_deb_and_a_missing_one_is_named(tmp_path):
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: hmm-harness-probe\nVersion: 1\nArchitecture: all\n"
        "Maintainer: nobody <nobody@example.org>\nDescription: a probe\n")
    config = tree / "usr/lib/modules/7.2.13-probe/config"
    config.parent.mkdir(parents=True)
    config.write_text("CONFIG_DEVICE_PRIVATE=y\n")
    deb = tmp_path / "probe.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
                   check=True, capture_output=True)
    runner = CommandRunner(log=io.StringIO())
    assert archive.read_member(deb, "usr/lib/modules/7.2.13-probe/config", runner) == \
        b"CONFIG_DEVICE_PRIVATE=y\n"
    with pytest.raises(KernelNotFoundError, match=r"probe\.deb has no usr/lib/modules/x/config"):
        archive.read_member(deb, "usr/lib/modules/x/config", runner)
