"""The Debian sid tree that is both the build root and, read-only over 9p, the guest's root."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from pathlib import Path

from harness import debian
from harness.paths import PROJECT_ROOT

PACKAGES_FILE = PROJECT_ROOT / "vm-images" / "guest-root.packages"
# Mount points for the harness's shares; the guest root itself stays read-only.
ROOT_ENVIRONMENT = "PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8"
MOUNT_POINTS = ("hmm/project", "hmm/build", "hmm/results")


def recipe_packages(text: str) -> list[str]:
    """Package names of the recipe file, without comments."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def mmdebstrap_argv(suites: list[str], mirror: str, packages: list[str],
                    target: Path) -> list[str]:
    mkdirs = " ".join(f'"$1/{m}"' for m in MOUNT_POINTS)
    return [
        "mmdebstrap", "--variant=apt", "--mode=root",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=Acquire::Languages "none"',
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--include=" + ",".join(packages),
        f"--customize-hook=mkdir -p {mkdirs}",
        suites[0], str(target),
        *[f"deb {mirror} {suite} main" for suite in suites],
    ]


def packages_for(release: str, recipe_text: str) -> list[str]:
    return recipe_packages(recipe_text) + debian.KernelPackages(release).for_guest_root()


def root_name(packages: list[str]) -> str:
    """The cache directory name of a root holding `packages`: a root built from another list
    is never reused, so a package added to the recipe reaches every cache that has a root."""
    digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()
    return f"root-{digest[:12]}"


def in_root_argv(root: Path, command: list[str], binds: Mapping[str, Path],
                 cwd: str = "/") -> list[str]:
    """Run `command` chrooted in `root` with host dirs bound in, in a private mount namespace
    so nothing stays mounted afterwards."""
    # A private /tmp: compilers and the suites write there, and the cached root stays clean.
    steps = [f"mount -t proc proc {shlex.quote(str(root / 'proc'))}",
             f"mount -t tmpfs tmp {shlex.quote(str(root / 'tmp'))}"]
    for inside, host in binds.items():
        target = shlex.quote(str(root / inside.lstrip("/")))
        steps.append(f"mkdir -p {target} && mount --bind {shlex.quote(str(host))} {target}")
    # The host's environment (CC, PYTHONPATH, PYTHONDONTWRITEBYTECODE, ...) stays outside.
    inner = f"cd {shlex.quote(cwd)} && exec env -i {ROOT_ENVIRONMENT} {shlex.join(command)}"
    steps.append(f"chroot {shlex.quote(str(root))} sh -c {shlex.quote(inner)}")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join(steps)]
