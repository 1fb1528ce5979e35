"""Pure: whether the machine the harness runs on can run the suites on its own kernel.

Running on the host (vendor mode) puts test_hmm into the running kernel, where a kernel bug
can take the machine down. These are the checks made before anything is built or loaded;
harness/hostfacts.py gathers the facts they judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness import kconfig, spm
from harness.errors import HarnessError, HostNotReadyError

# What the guest side imports: the suites, their plugin (pyroute2 for the uevents of
# test_hmm's devices) and the stateful suite.
PYTHON_MODULES = {"pytest": "python3-pytest", "cffi": "python3-cffi",
                  "pytest_timeout": "python3-pytest-timeout", "pyroute2": "python3-pyroute2",
                  "hypothesis": "python3-hypothesis"}
PIP_NAMES = {"pytest": "pytest", "cffi": "cffi", "pytest_timeout": "pytest-timeout",
             "pyroute2": "pyroute2", "hypothesis": "hypothesis"}


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
class Assessment:
    """What a run on this host would use, and everything that stops it."""

    release: str
    config_source: str | None
    compiler: str | None
    spm_choice: spm.Choice | None
    spm_found: tuple[spm.Candidate, ...]
    problems: tuple[HarnessError, ...]

    @property
    def ready(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"ready": self.ready, "release": self.release,
                "config_source": self.config_source, "compiler": self.compiler,
                "spm": self.spm_choice.as_json() if self.spm_choice is not None else None,
                "spm_found": spm.Choice((), "", self.spm_found).as_json()["found"],
                "problems": [{"problem": p.problem, "fix": p.fix} for p in self.problems]}

    def refusal(self) -> HarnessError:
        """One error naming every problem, for the CLI."""
        if len(self.problems) == 1:
            return self.problems[0]
        return HostNotReadyError(
            f"{len(self.problems)} things stop a run on this host:\n"
            + "\n".join(f"  - {p.problem}\n    fix: {p.fix}" for p in self.problems),
            "fix each of them, then run host-check again")


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


def assess(facts: HostFacts, coherent: bool, spm_addresses: tuple[int, ...] = (),
           ) -> Assessment:
    """Every check, each problem with its fix; nothing stops at the first."""
    problems: list[HarnessError] = []
    if not facts.is_root:
        problems.append(HostNotReadyError(
            "running on the host needs root: the harness loads test_hmm and reads /proc/iomem",
            "run it as root (sudo)"))
    if "test_hmm" in facts.loaded_modules:
        problems.append(HostNotReadyError(
            "test_hmm is loaded already; the harness loads its own build with its own "
            "parameters", "rmmod test_hmm, after whatever uses /dev/hmm_dmirror* is done"))
    if not facts.build_dir_ready:
        problems.append(HostNotReadyError(
            f"no kernel build directory for the running kernel "
            f"(/lib/modules/{facts.release}/build/Makefile)",
            f"install the kernel headers (Debian: apt install linux-headers-{facts.release})"))
    compiler = None
    if not facts.config_text:
        problems.append(HostNotReadyError(
            "the running kernel's config is not readable: none of "
            + ", ".join(config_sources(facts.release)),
            "boot a kernel that ships its config, or build one with CONFIG_IKCONFIG_PROC=y"))
    else:
        options = kconfig.parse(facts.config_text)
        try:
            kconfig.require(options, f"running here ({facts.release}, "
                                     f"{facts.config_sources[0]})")
        except HarnessError as problem:
            problems.append(problem)
        try:
            compiler = matching_compiler(options.get("CONFIG_CC_VERSION_TEXT", ""),
                                         facts.compilers)
        except HarnessError as problem:
            problems.append(problem)
    if facts.missing_python_modules:
        missing = facts.missing_python_modules
        problems.append(HostNotReadyError(
            "the suites run with this machine's Python, which lacks " + ", ".join(missing),
            "apt install " + " ".join(PYTHON_MODULES[m] for m in missing)
            + " (or pip install " + " ".join(PIP_NAMES[m] for m in missing) + ")"))
    found = tuple(spm.candidates(facts.memory)) if coherent else ()
    choice = None
    if coherent:
        try:
            choice = spm.check_given(spm_addresses, found) if spm_addresses \
                else spm.choose(found)
        except HarnessError as problem:
            problems.append(problem)
    return Assessment(facts.release, facts.config_sources[0] if facts.config_sources else None,
                      compiler, choice, found, tuple(problems))


def describe_found(found: Sequence[spm.Candidate]) -> str:
    if not found:
        return "soft-reserved memory: none found"
    lines = ["soft-reserved memory found:"]
    for candidate in found:
        use = f"used by {', '.join(candidate.owners)}" if candidate.owners else "free"
        lines.append(f"  {candidate.range}  {use}  (from {', '.join(candidate.sources)})")
    return "\n".join(lines)


def describe(assessment: Assessment) -> str:
    lines = [f"kernel {assessment.release}: config from {assessment.config_source or 'nowhere'}"
             + (f", test_hmm would be built with {assessment.compiler}"
                if assessment.compiler else "")]
    if assessment.spm_choice is not None:
        chosen = ", ".join(f"spm_addr_dev{i}={a:#x}"
                           for i, a in enumerate(assessment.spm_choice.addresses))
        lines.append(f"coherent devices: {chosen} ({assessment.spm_choice.reason})")
    if assessment.ready:
        lines.append("ready: this machine can run the suites on its running kernel")
    return "\n".join(lines)
