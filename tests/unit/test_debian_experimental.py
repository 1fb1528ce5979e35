"""Debian experimental's 7.3 release candidate: its packages carry the ABI name `7.3-amd64`
(no patch level, no +debNN), as `apt-cache pkgnames` over sid and experimental shows."""

from harness import debian


def test_experimental_rc_is_newest_and_named_by_abi(data_dir):
    names = (data_dir / "sid-experimental-pkgnames-linux-binary.txt").read_text().split()
    assert debian.releases_from_pkgnames(names) == ["7.3-amd64", "7.2.13+deb14-amd64"]
    release, why = debian.choose_release(debian.parse_debian_spec("experimental"),
                                         debian.releases_from_pkgnames(names))
    assert release == "7.3-amd64" and "experimental" in why


def test_packages_and_source_of_the_rc():
    packages = debian.KernelPackages("7.3-amd64")
    assert packages.for_guest_root() == ["linux-binary-7.3-amd64", "linux-base-7.3-amd64",
                                         "linux-modules-7.3-amd64", "linux-headers-7.3-amd64"]
    assert packages.source == "linux-source-7.3"
    assert debian.parse_debian_spec("experimental:7.3-amd64") == debian.DebianKernelSpec(
        "experimental", "7.3-amd64")
    assert debian.suites_for("experimental") == ["sid", "experimental"]
