"""Pure: whether the machine the harness runs on can run the suites on its own kernel.

Running on the host (vendor mode) puts test_hmm into the running kernel, where a kernel bug
can take the machine down. These are the checks made before anything is built or loaded;
harness/hostfacts.py gathers the facts they judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import kconfig, spm
from harness.errors import HostNotReadyError

# What the guest side imports (pyroute2 is not among them: the suites do not use it).
PYTHON_MODULES = {"pytest": "python3-pytest", "cffi": "python3-cffi",
                  "pytest_timeout": "python3-pytest-timeout",
                  "hypothesis": "python3-hypothesis"}
PIP_NAMES = {"pytest": "pytest", "cffi": "cffi", "pytest_timeout": "pytest-timeout",
             "hypothesis": "hypothesis"}


@dataclass(frozen=True)
class HostFacts:
    release: str  # uname -r
    is_root: bool
    build_dir_ready: bool  # /lib/modules/RELEASE/build/Makefile exists
    config_sources: tuple[str, ...]  # the config files found, in the order they are tried
    config_text: str  # the first one's contents, "" without one
    compilers: dict[str, str] = field(default_factory=dict)  # name -> first line of --version
    loaded_modules: tuple[str, ...] = ()
    missing_python_modules: tuple[str, ...] = ()
    memory: spm.MachineMemory = field(default_factory=spm.MachineMemory)


@dataclass(frozen=True)
class HostPlan:
    """What a run on this host would use."""

    release: str
    config_source: str
    compiler: str
    spm: spm.Choice | None

    def as_json(self) -> dict[str, object]:
        return {"release": self.release, "config_source": self.config_source,
                "compiler": self.compiler,
                "spm": self.spm.as_json() if self.spm is not None else None}


def config_sources(release: str) -> tuple[str, ...]:
    """Where a running kernel's config may be, in the order they are tried."""
    return ("/proc/config.gz", f"/boot/config-{release}", f"/lib/modules/{release}/config")


def compiler_candidates(version_text: str) -> list[str]:
    """Program names that may be the compiler CONFIG_CC_VERSION_TEXT describes."""
    words = version_text.split()
    if "clang" in words and "version" in words:
        version = words[words.index("version") + 1]
        return [f"clang-{version.split('.')[0]}", "clang"]
    if not words:
        return ["gcc"]
    named = words[0]
    major = words[-1].split(".")[0]
    names = [named, f"gcc-{major}", "gcc"]
    return list(dict.fromkeys(names))


def matching_compiler(version_text: str, compilers: dict[str, str]) -> str:
    """The compiler whose `--version` says exactly what the kernel's config says."""
    for name in compiler_candidates(version_text):
        if compilers.get(name, "").strip() == version_text.strip():
            return name
    tried = "; ".join(f"{name}: {compilers.get(name) or 'not found'}"
                      for name in compiler_candidates(version_text))
    first = compiler_candidates(version_text)[0]
    raise HostNotReadyError(
        f"no compiler here matches the one the kernel was built with "
        f"({version_text!r}); tried {tried}",
        f"install that compiler (Debian: apt install {first.removeprefix('x86_64-linux-gnu-')})"
        ": a module built with another one may not load, or may misbehave")


def plan(facts: HostFacts, coherent: bool, spm_addresses: tuple[int, ...] = ()) -> HostPlan:
    """HostNotReadyError (or SpmError) for the first thing that stops a run here."""
    if not facts.is_root:
        raise HostNotReadyError("running on the host needs root: the harness loads test_hmm "
                                "and reads /proc/iomem", "run it as root (sudo)")
    if "test_hmm" in facts.loaded_modules:
        raise HostNotReadyError("test_hmm is loaded already; the harness loads its own "
                                "build with its own parameters",
                                "rmmod test_hmm, after whatever uses /dev/hmm_dmirror* is done")
    if not facts.build_dir_ready:
        raise HostNotReadyError(
            f"no kernel build directory for the running kernel "
            f"(/lib/modules/{facts.release}/build/Makefile)",
            f"install the kernel headers (Debian: apt install linux-headers-{facts.release})")
    if not facts.config_text:
        raise HostNotReadyError(
            "the running kernel's config is not readable: none of "
            + ", ".join(config_sources(facts.release)),
            "boot a kernel that ships its config, or build one with CONFIG_IKCONFIG_PROC=y")
    options = kconfig.parse(facts.config_text)
    kconfig.require(options, f"running here ({facts.release}, {facts.config_sources[0]})")
    compiler = matching_compiler(options.get("CONFIG_CC_VERSION_TEXT", ""), facts.compilers)
    if facts.missing_python_modules:
        missing = facts.missing_python_modules
        raise HostNotReadyError(
            "the suites run with this machine's Python, which lacks "
            + ", ".join(missing),
            "apt install " + " ".join(PYTHON_MODULES[m] for m in missing)
            + " (or pip install " + " ".join(PIP_NAMES[m] for m in missing) + ")")
    choice = None
    if coherent:
        found = spm.candidates(facts.memory)
        choice = spm.check_given(spm_addresses, found) if spm_addresses else spm.choose(found)
    return HostPlan(facts.release, facts.config_sources[0], compiler, choice)


def describe_found(found: list[spm.Candidate]) -> str:
    if not found:
        return "soft-reserved memory: none found"
    lines = ["soft-reserved memory found:"]
    for candidate in found:
        use = f"used by {', '.join(candidate.owners)}" if candidate.owners else "free"
        lines.append(f"  {candidate.range}  {use}  (from {', '.join(candidate.sources)})")
    return "\n".join(lines)


def describe(ready: HostPlan) -> str:
    lines = [f"kernel {ready.release}: config from {ready.config_source}, "
             f"test_hmm would be built with {ready.compiler}"]
    if ready.spm is not None:
        chosen = ", ".join(f"spm_addr_dev{i}={a:#x}" for i, a in enumerate(ready.spm.addresses))
        lines.append(f"coherent devices: {chosen} ({ready.spm.reason})")
    lines.append("ready: this machine can run the suites on its running kernel")
    return "\n".join(lines)
