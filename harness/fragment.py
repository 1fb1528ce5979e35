"""Pure: the project's kernel config fragments (vm-images/kconfig/*.config).

A fragment holds one option per line, `CONFIG_X=value  # why` or `# CONFIG_X is not set  #
why`; a line without its reason is refused. Fragments are merged in order (a later one wins),
rendered for `make KCONFIG_ALLCONFIG=... allnoconfig`, and checked against the resulting
.config: every option must come out exactly as asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness import kconfigdeps
from harness.errors import KernelConfigError, UsageError
from harness.paths import PROJECT_ROOT

FRAGMENT_DIR = PROJECT_ROOT / "vm-images" / "kconfig"
BASE = FRAGMENT_DIR / "base.config"
DEBUG = FRAGMENT_DIR / "debug.config"

_SET = re.compile(r'^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^\s"]+)\s+#\s*(\S.*)$')
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set\s+#\s*(\S.*)$")
_SET_NO_REASON = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=\S+\s*$")


@dataclass(frozen=True)
class Wanted:
    option: str  # CONFIG_X
    value: str  # y, m, n, or a number or string as .config writes it
    reason: str
    where: str  # fragment file:line


def parse(text: str, name: str) -> list[Wanted]:
    wanted: list[Wanted] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{name}:{number}"
        if match := _SET.match(line):
            wanted.append(Wanted(match[1], match[2].strip('"'), match[3], where))
        elif match := _UNSET.match(line):
            wanted.append(Wanted(match[1], "n", match[2], where))
        elif _SET_NO_REASON.match(line) or re.match(r"^# CONFIG_\w+ is not set\s*$", line):
            raise UsageError(f"{where}: `{line}` gives no reason",
                             "end the line with `  # why the harness needs it`")
        elif line and not line.startswith("#"):
            raise UsageError(f"{where}: cannot read `{line}`",
                             "write `CONFIG_NAME=value  # reason` or "
                             "`# CONFIG_NAME is not set  # reason`")
    return wanted


def load(paths: list[Path]) -> list[Wanted]:
    return merge([parse(p.read_text(), _shown(p)) for p in paths])


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def merge(fragments: list[list[Wanted]]) -> list[Wanted]:
    """One list, in first-seen order; a later fragment's value for an option wins."""
    merged: dict[str, Wanted] = {}
    for fragment in fragments:
        for item in fragment:
            merged[item.option] = item
    return list(merged.values())


def render(wanted: list[Wanted]) -> str:
    """The KCONFIG_ALLCONFIG file: plain .config lines."""
    lines = []
    for item in wanted:
        if item.value == "n":
            lines.append(f"# {item.option} is not set")
        elif re.fullmatch(r"[ym]|-?\d+|0x[0-9a-fA-F]+", item.value):
            lines.append(f"{item.option}={item.value}")
        else:
            lines.append(f'{item.option}="{item.value}"')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Dropped:
    wanted: Wanted
    got: str


def check(wanted: list[Wanted], options: dict[str, str]) -> list[Dropped]:
    """Options whose value in the configured .config differs from the fragment's."""
    return [Dropped(item, options.get(item.option, "n")) for item in wanted
            if options.get(item.option, "n") != item.value]


def explain(dropped: list[Dropped], options: dict[str, str],
            model: kconfigdeps.Model | None) -> str:
    """One paragraph per dropped option, with the Kconfig dependency that dropped it."""
    values = {name.removeprefix("CONFIG_"): value for name, value in options.items()}
    paragraphs = []
    for item in dropped:
        head = (f"{item.wanted.option}={item.wanted.value} ({item.wanted.where}: "
                f"{item.wanted.reason}) came out as {item.got}")
        if model is None:
            paragraphs.append(head)
            continue
        why = kconfigdeps.explain(item.wanted.option.removeprefix("CONFIG_"),
                                  item.wanted.value, values, model)
        paragraphs.append(head + ":\n" + "\n".join(f"    {line}" for line in why))
    return "\n".join(f"  {p}" for p in paragraphs)


def require(wanted: list[Wanted], options: dict[str, str], where: str,
            model: kconfigdeps.Model | None) -> None:
    dropped = check(wanted, options)
    if dropped:
        raise KernelConfigError(
            f"configuring {where} dropped options the harness asked for:\n"
            + explain(dropped, options, model),
            "add the missing dependencies to the fragment (vm-images/kconfig/), or use a tree "
            "whose Kconfig offers these options")
