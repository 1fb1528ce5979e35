"""Debian kernels: which packages make up a kernel, and which release to use.

Everything here is pure: it decides names, versions and apt configuration text.
`harness.archive` acts on those decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import KernelNotFoundError, UsageError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The newest Debian kernel with CONFIG_DEVICE_PRIVATE=y when this was written; sid moves on, so
# a pinned release that vanished falls back to sid's newest kernel that still has the option.
PINNED_RELEASE = "7.2.13+deb14-amd64"
SUITES_WITH_DEVICE_PRIVATE = ("sid", "experimental")
KNOWN_SUITES = ("bookworm", "bookworm-backports", "trixie", "sid", "experimental")
_FLAVOUR = "amd64"
_RELEASE_RE = re.compile(r"^(\d+)\.(\d+)[^\s/]*-" + _FLAVOUR + "$")


@dataclass(frozen=True)
class DebianKernelSpec:
    """A kernel from the Debian archive: a suite, and a release pinned in it or not."""

    suite: str
    # `uname -r` of the kernel; None means the newest one in the suite with DEVICE_PRIVATE.
    release: str | None

    def describe(self) -> str:
        return f"Debian {self.suite} {self.release or '(newest)'}"


DEFAULT_KERNEL = DebianKernelSpec(suite="sid", release=PINNED_RELEASE)


def parse_debian_spec(text: str) -> DebianKernelSpec:
    """`sid`, `experimental`, `7.2.13+deb14-amd64`, or `sid:7.2.13+deb14-amd64`."""
    suite, _, release = text.rpartition(":") if ":" in text else ("", "", text)
    if not suite and release in KNOWN_SUITES:
        return DebianKernelSpec(suite=release, release=None)
    suite = suite or "sid"
    if suite not in KNOWN_SUITES:
        raise UsageError(f"unknown Debian suite '{suite}' in --kernel {text}",
                         f"use one of: {', '.join(KNOWN_SUITES)}")
    if not _RELEASE_RE.match(release):
        raise UsageError(
            f"--kernel {text}: '{release}' is neither a path, a Debian suite nor a Debian "
            f"kernel release like {PINNED_RELEASE}",
            "give an existing path, a suite (sid, experimental) or a release (uname -r)")
    return DebianKernelSpec(suite=suite, release=release)


@dataclass(frozen=True)
class KernelPackages:
    """The binary packages one Debian kernel release is split into (7.x packaging)."""

    release: str

    @property
    def image(self) -> str:
        return f"linux-binary-{self.release}"

    @property
    def base(self) -> str:
        return f"linux-base-{self.release}"

    @property
    def modules(self) -> str:
        return f"linux-modules-{self.release}"

    @property
    def headers(self) -> str:
        return f"linux-headers-{self.release}"

    @property
    def source(self) -> str:
        match = _RELEASE_RE.match(self.release)
        if match is None:
            raise KernelNotFoundError(f"cannot tell the source version of kernel {self.release}")
        return f"linux-source-{match.group(1)}.{match.group(2)}"

    def for_guest_root(self) -> list[str]:
        return [self.image, self.base, self.modules, self.headers]


def releases_from_pkgnames(names: list[str]) -> list[str]:
    """Kernel releases of the generic flavour among `apt-cache pkgnames linux-binary-` output."""
    releases = []
    for name in names:
        release = name.strip().removeprefix("linux-binary-")
        if release == name.strip() or release.startswith("unsigned-"):
            continue
        if _RELEASE_RE.match(release) and not re.search(r"-(cloud|rt)-amd64$", release):
            releases.append(release)
    return sorted(set(releases), key=release_sort_key, reverse=True)


def release_sort_key(release: str) -> tuple[int, ...]:
    """7.2.13+deb14-amd64 -> (7, 2, 13, 14); release candidates sort below the release."""
    numbers = [int(n) for n in re.findall(r"\d+", release.removesuffix("-" + _FLAVOUR))]
    is_rc = "rc" in release
    return (*numbers[:3], *([0] * (3 - len(numbers[:3]))), 0 if is_rc else 1, *numbers[3:])


def choose_release(spec: DebianKernelSpec, available: list[str]) -> tuple[str, str]:
    """Pick the release to use and say why. `available` is newest first."""
    if spec.release and spec.release in available:
        return spec.release, f"pinned kernel {spec.release} from Debian {spec.suite}"
    if not available:
        raise KernelNotFoundError(
            f"Debian {spec.suite} offers no {_FLAVOUR} kernel packages (linux-binary-*)",
            "check the mirror (--mirror) and the suite name")
    if spec.release:
        return available[0], (f"pinned kernel {spec.release} is gone from Debian {spec.suite}; "
                              f"falling back to its newest kernel {available[0]}")
    return available[0], f"newest kernel in Debian {spec.suite}: {available[0]}"


def parse_apt_show_version(text: str) -> str:
    """The Version field of the first stanza of `apt-cache show` output."""
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise KernelNotFoundError("apt-cache show gave no Version field")


def apt_config(state_dir: str, mirror: str, suites: list[str]) -> tuple[str, str]:
    """(apt.conf, sources.list) texts for a private apt that leaves the host's apt alone."""
    sources = "".join(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n"
        for suite in suites)
    conf = "\n".join([
        f'Dir::Etc::SourceList "{state_dir}/sources.list";',
        'Dir::Etc::SourceParts "/dev/null";',
        f'Dir::State "{state_dir}/state";',
        f'Dir::State::Lists "{state_dir}/lists";',
        'Dir::State::status "/dev/null";',
        f'Dir::Cache "{state_dir}/cache";',
        # The archive here is a dated snapshot whose sid Release file is past Valid-Until.
        'Acquire::Check-Valid-Until "false";',
        'Acquire::Languages "none";',
        'APT::Architecture "amd64";',
        'APT::Sandbox::User "root";',
        "",
    ])
    return conf, sources


def suites_for(suite: str) -> list[str]:
    """experimental only holds what differs from sid, so it needs sid beside it."""
    return ["sid", "experimental"] if suite == "experimental" else [suite]
