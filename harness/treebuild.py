"""Acts: configures and builds a kernel source tree out of tree, with ccache, incrementally.

The build directory is `CACHE/trees/NAME-HASH/build` (keyed by the tree's path;
`build-debug` with --debug), so the user's tree stays clean and a second run rebuilds only
what changed. The config is `make allnoconfig` with the project's fragments as
KCONFIG_ALLCONFIG; later runs with the same fragments only `make olddefconfig` (the tree's
Kconfig may have changed, as it does in a bisection). Every fragment option is then
checked, and one that did not survive is named with the Kconfig dependency that dropped it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import fragment, hostbuild, kconfig, kconfigdeps, kernelspec
from harness.commands import CommandRunner, require_tool
from harness.errors import MissingToolError
from harness.provision import Kernel

BUILD_TOOLS = {"make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc",
               "perl": "perl"}
# objtool (x86-64) needs libelf's headers.
LIBELF_HEADER = Path("/usr/include/gelf.h")
TARGETS = ("bzImage", "modules")


def build_dir(cache_dir: Path, tree: Path, fragments: list[Path]) -> Path:
    """`build` for the base fragment, `build-debug` with debug.config and so on: switching
    --debug on and off does not rebuild the tree each time."""
    extra = [p.stem for p in fragments[1:]]
    return cache_dir / "trees" / kernelspec.path_key(tree) / "-".join(["build", *extra])


@contextmanager
def tree_lock(cache_dir: Path, tree: Path) -> Iterator[None]:
    """One build at a time in a tree's build directory; other harness runs go on."""
    home = cache_dir / "trees" / kernelspec.path_key(tree)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def jobs() -> int:
    return (os.cpu_count() or 1) + 1


def _require_tools() -> None:
    for tool, package in BUILD_TOOLS.items():
        require_tool(tool, package)
    if not LIBELF_HEADER.exists():
        raise MissingToolError("libelf's headers are not installed (objtool needs gelf.h)",
                               "apt-get install libelf-dev, or run ci/bootstrap")


def make_argv(tree: Path, out: Path, compiler: tuple[str, ...], env: tuple[str, ...],
              *targets: str, extra: tuple[str, ...] = ()) -> list[str]:
    prefix = ["env", *env] if env else []
    return [*prefix, "make", "-C", str(tree), f"O={out}", f"-j{jobs()}", *compiler, *extra,
            *targets]


def build(tree: Path, cache_dir: Path, fragments: list[Path], runner: CommandRunner) -> Kernel:
    """Configure (if needed), check and build `tree`; the Kernel the harness boots."""
    tree = tree.resolve()
    _require_tools()
    ccache = hostbuild.have_ccache()
    compiler = hostbuild.compiler_args(ccache)
    env = hostbuild.ccache_env(cache_dir) if ccache else ()
    if not ccache:
        runner.announce("# ccache is not installed (apt-get install ccache): every build "
                        "starts cold")
    out = build_dir(cache_dir, tree, fragments)
    wanted = fragment.load(fragments)
    rendered = fragment.render(wanted)
    digest = hashlib.sha256(rendered.encode()).hexdigest()
    allconfig, stamp = out / "hmm-harness.fragment", out / "hmm-harness.fragment.sha256"
    if not runner.dry_run:
        out.mkdir(parents=True, exist_ok=True)
    fresh = not (out / ".config").exists() or not stamp.exists() \
        or stamp.read_text().strip() != digest
    if fresh:
        if not runner.dry_run:
            allconfig.write_text(rendered)
        runner.run(make_argv(tree, out, compiler, env, "allnoconfig",
                             extra=(f"KCONFIG_ALLCONFIG={allconfig}",)),
                   what=f"configuring {tree} (allnoconfig plus "
                        f"{', '.join(p.name for p in fragments)})")
        if not runner.dry_run:
            stamp.write_text(digest + "\n")
    else:
        runner.run(make_argv(tree, out, compiler, env, "olddefconfig"),
                   what=f"updating the config of {out}")
    where = f"the tree {tree}"
    if not runner.dry_run:
        options = kconfig.parse((out / ".config").read_text())
        if fragment.check(wanted, options):
            runner.announce(f"# reading the Kconfig files of {tree} to explain the dropped "
                            "options")
            model = kconfigdeps.load(tree)
            fragment.require(wanted, options, where, model)
    runner.run(make_argv(tree, out, compiler, env, *TARGETS),
               what=f"building {tree} in {out}",
               fix=f"read the compiler's output above; the build directory is {out}")
    if runner.dry_run:
        release, identity = "<release>", "<identity>"
    else:
        release = (out / "include/config/kernel.release").read_text().strip()
        identity = _identity(out)
    return Kernel(release=release, image=out / kernelspec.BZIMAGE, config=out / ".config",
                  modules_dir=out, source_dir=tree, headers_in_root=str(out),
                  origin=f"kernel tree {tree} (built in {out})",
                  host_build=hostbuild.HostBuild(out, env, compiler, identity))


def _identity(out: Path) -> str:
    digest = hashlib.sha256((out / kernelspec.BZIMAGE).read_bytes())
    symvers = out / "Module.symvers"
    if symvers.exists():
        digest.update(symvers.read_bytes())
    return digest.hexdigest()[:16]
