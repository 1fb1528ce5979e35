"""The one place that runs external programs. Every command is printed so it can be pasted."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from harness.errors import CommandFailedError, MissingToolError


def format_command(argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None,
                   cwd: Path | None = None) -> str:
    """A shell line that does what running `argv` does."""
    words = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    words += [shlex.quote(os.fspath(a)) for a in argv]
    line = " ".join(words)
    return f"(cd {shlex.quote(str(cwd))} && {line})" if cwd else line


@dataclass
class CommandRunner:
    """Runs commands, or with dry_run only prints them."""

    dry_run: bool = False
    log: TextIO = field(default_factory=lambda: sys.stderr)
    history: list[str] = field(default_factory=list)

    def announce(self, line: str) -> None:
        self.history.append(line)
        print(f"$ {line}", file=self.log, flush=True)

    def run(self, argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, capture: bool = False, what: str = "",
            fix: str = "") -> str:
        """Run argv; raise CommandFailedError naming `what` if it fails. Returns captured stdout."""
        self.announce(format_command(argv, env, cwd))
        if self.dry_run:
            return ""
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([os.fspath(a) for a in argv], env=full_env, cwd=cwd,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, text=True)
        if proc.returncode != 0:
            detail = f"\n{proc.stderr.strip()[-2000:]}" if capture and proc.stderr else ""
            raise CommandFailedError(
                f"{what or argv[0]} failed with exit status {proc.returncode}: "
                f"{format_command(argv, env, cwd)}{detail}",
                fix or "read the command's output above; rerun it by hand to investigate")
        return proc.stdout if capture else ""


    def status(self, argv: Sequence[str | os.PathLike[str]], *,
               env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
        """Run argv, its output going where the harness's goes; its exit status, whatever
        it is (a test run that fails still ran). 0 in a dry run."""
        self.announce(format_command(argv, env, cwd))
        if self.dry_run:
            return 0
        return subprocess.run([os.fspath(a) for a in argv], env={**os.environ, **(env or {})},
                              cwd=cwd).returncode


    def output_bytes(self, argv: Sequence[str | os.PathLike[str]], *, what: str = "") -> bytes:
        """Run argv and return its standard output as bytes (an archive, say); its standard
        error goes into the CommandFailedError should it fail. b"" in a dry run."""
        self.announce(format_command(argv))
        if self.dry_run:
            return b""
        proc = subprocess.run([os.fspath(a) for a in argv], capture_output=True)
        if proc.returncode != 0:
            raise CommandFailedError(
                f"{what or argv[0]} failed with exit status {proc.returncode}: "
                f"{format_command(argv)}\n{proc.stderr.decode(errors='replace').strip()[-2000:]}",
                "read the command's output above; rerun it by hand to investigate")
        return proc.stdout

    def start(self, argv: Sequence[str | os.PathLike[str]], *,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start argv in a session of its own, so that it can be killed with its children,
        and return at once; its output goes where the harness's goes. Not in a dry run."""
        self.announce(format_command(argv, env))
        assert not self.dry_run, "a dry run starts nothing"
        return subprocess.Popen([os.fspath(a) for a in argv], env={**os.environ, **(env or {})},
                                start_new_session=True)


def require_tool(name: str, package: str) -> str:
    """Absolute path of a host program, or a MissingToolError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"'{name}' is not installed on this host",
            f"install it with 'apt-get install {package}', or run ci/bootstrap which installs "
            "everything the harness needs")
    return path
