"""Acts on the Debian archive through a private apt state under the harness's cache."""

from __future__ import annotations

import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness import debian
from harness.commands import CommandRunner, require_tool
from harness.errors import KernelNotFoundError


@dataclass
class PrivateApt:
    """apt-get and apt-cache with their own sources, lists and cache: the host's apt is left
    untouched."""

    state_dir: Path
    mirror: str
    suites: list[str]
    runner: CommandRunner
    _updated: bool = False

    @property
    def config_file(self) -> Path:
        return self.state_dir / "apt.conf"

    def _env(self) -> dict[str, str]:
        return {"APT_CONFIG": str(self.config_file)}

    def prepare(self) -> None:
        require_tool("apt-get", "apt")
        conf, sources = debian.apt_config(str(self.state_dir), self.mirror, self.suites)
        for sub in ("lists/partial", "cache/archives/partial", "state"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(conf)
        (self.state_dir / "sources.list").write_text(sources)

    def update(self) -> None:
        if self._updated:
            return
        self.prepare()
        self.runner.run(["apt-get", "-q", "update"], env=self._env(), what="apt-get update",
                        fix=f"check that {self.mirror} is reachable, or pass --mirror")
        self._updated = True

    def pkgnames(self, prefix: str) -> list[str]:
        self.update()
        out = self.runner.run(["apt-cache", "pkgnames", prefix], env=self._env(), capture=True)
        return out.split()

    def version(self, package: str) -> str:
        self.update()
        out = self.runner.run(["apt-cache", "show", "--no-all-versions", package],
                              env=self._env(), capture=True, what=f"apt-cache show {package}",
                              fix=f"{package} is not in Debian {'/'.join(self.suites)}")
        return debian.parse_apt_show_version(out)

    def download(self, package: str, version: str, dest: Path) -> Path:
        """The .deb of package=version in dest, downloaded only if it is not there yet."""
        dest.mkdir(parents=True, exist_ok=True)
        wanted = f"{package}_{version.replace(':', '%3a')}_"
        for existing in dest.glob(f"{wanted}*.deb"):
            return existing
        self.update()
        self.runner.run(["apt-get", "-q", "download", f"{package}={version}"], env=self._env(),
                        cwd=dest, what=f"downloading {package}")
        found = sorted(dest.glob(f"{wanted}*.deb"))
        if not found:
            raise KernelNotFoundError(f"apt-get download left no {wanted}*.deb in {dest}")
        return found[0]


def read_member(deb: Path, member: str, runner: CommandRunner) -> bytes:
    """One file from a .deb's data archive, which dpkg-deb unpacks whatever its compression."""
    require_tool("dpkg-deb", "dpkg")
    data = runner.output_bytes(["dpkg-deb", "--fsys-tarfile", deb],
                               what=f"reading the data archive of {deb.name}")
    wanted = {member.lstrip("/"), f"./{member.lstrip('/')}"}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for entry in tar:
            if entry.name in wanted and (content := tar.extractfile(entry)) is not None:
                return content.read()
    raise KernelNotFoundError(f"{deb.name} has no {member}")


def extract_source_subset(deb: Path, dest: Path, members: list[str],
                          runner: CommandRunner) -> None:
    """Unpack only `members` (globs) of the kernel source tarball inside a linux-source .deb."""
    require_tool("xz", "xz-utils")
    if runner.dry_run:
        runner.announce(f"# unpack {' '.join(members)} of {deb.name} into {dest}")
        return
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    runner.run(["dpkg-deb", "-x", deb, staging / "deb"], what="unpacking linux-source")
    tarballs = list((staging / "deb/usr/src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise KernelNotFoundError(f"{deb.name} holds no linux-source tarball under /usr/src")
    top = tarballs[0].name.split(".tar.")[0]
    runner.run(["tar", "-xf", tarballs[0], "-C", staging, "--wildcards",
                *[f"{top}/{m}" for m in members]], what="extracting the kernel source")
    shutil.rmtree(staging / "deb")
    shutil.rmtree(dest, ignore_errors=True)
    (staging / top).rename(dest)
    shutil.rmtree(staging)
