"""Pure: enough of the Kconfig language to say why an option did not survive configuration.

The model holds, for each symbol, where it is defined, its `depends on`, the conditions of the
blocks around it (`if`, `menu ... depends on`, `choice`), whether it has a prompt, and which
symbols `select` it. `explain()` evaluates those conditions against the resulting .config
(tristate logic: n < m < y) and names the ones that are not met, following unset symbols
down a few levels: "TEST_HMM depends on DEVICE_PRIVATE (n); DEVICE_PRIVATE depends on
ZONE_DEVICE (n); ...".

Reading the files is `load()`'s job; everything else works on text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------
# Expressions

_TOKEN = re.compile(r"""\s*(?:(&&|\|\||!=|<=|>=|[!=<>()])|("(?:[^"\\]|\\.)*"|'[^']*')
                        |(\$\()|([A-Za-z0-9_.+-]+))""", re.X)
TRISTATE = {"n": 0, "m": 1, "y": 2}
_NAMES = {0: "n", 1: "m", 2: "y"}


@dataclass(frozen=True)
class Symbol:
    name: str


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Macro:
    """$(...): a Kconfig macro (compiler probes and the like), taken as true."""

    text: str


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Binary:
    operator: str  # && || = != < <= > >=
    left: Expr
    right: Expr


Expr = Symbol | Literal | Macro | Not | Binary


class ExprError(ValueError):
    pass


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None:
            raise ExprError(f"cannot read Kconfig expression {text!r} at {text[at:]!r}")
        if match.group(3):  # $( ... ) with nesting
            depth, end = 1, match.end()
            while end < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            tokens.append("$" + text[match.end() - 1:end])
            at = end
            continue
        tokens.append(next(g for g in match.groups() if g))
        at = match.end()
    return tokens


def parse_expr(text: str) -> Expr:
    tokens = _tokenize(text)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ExprError(f"Kconfig expression {text!r} ends too early")
        position += 1
        return tokens[position - 1]

    def primary() -> Expr:
        token = take()
        if token == "(":
            inner = disjunction()
            if take() != ")":
                raise ExprError(f"unbalanced parentheses in {text!r}")
            return inner
        if token == "!":
            return Not(primary())
        if token.startswith("$("):
            return Macro(token)
        if token[0] in "\"'":
            return Literal(token[1:-1])
        if token in TRISTATE:
            return Literal(token)
        if re.fullmatch(r"[A-Za-z0-9_]+", token) and not token.isdigit():
            return Symbol(token)
        return Literal(token)

    def comparison() -> Expr:
        left = primary()
        if peek() in ("=", "!=", "<", "<=", ">", ">="):
            operator = take()
            return Binary(operator, left, primary())
        return left

    def conjunction() -> Expr:
        left = comparison()
        while peek() == "&&":
            take()
            left = Binary("&&", left, comparison())
        return left

    def disjunction() -> Expr:
        left = conjunction()
        while peek() == "||":
            take()
            left = Binary("||", left, conjunction())
        return left

    result = disjunction()
    if position != len(tokens):
        raise ExprError(f"unexpected {tokens[position]!r} in Kconfig expression {text!r}")
    return result


def render(expr: Expr) -> str:
    if isinstance(expr, Symbol):
        return expr.name
    if isinstance(expr, Literal):
        return expr.text if expr.text in TRISTATE or expr.text.isdigit() else f'"{expr.text}"'
    if isinstance(expr, Macro):
        return expr.text
    if isinstance(expr, Not):
        inner = render(expr.operand)
        return f"!{inner}" if isinstance(expr.operand, Symbol | Literal) else f"!({inner})"
    if expr.operator in ("&&", "||"):
        def side(part: Expr) -> str:
            text = render(part)
            needs = isinstance(part, Binary) and part.operator == "||" and expr.operator == "&&"
            return f"({text})" if needs else text
        return f"{side(expr.left)} {expr.operator} {side(expr.right)}"
    return f"{render(expr.left)} {expr.operator} {render(expr.right)}"


def symbols_in(expr: Expr) -> list[str]:
    if isinstance(expr, Symbol):
        return [expr.name]
    if isinstance(expr, Not):
        return symbols_in(expr.operand)
    if isinstance(expr, Binary):
        return symbols_in(expr.left) + [s for s in symbols_in(expr.right)
                                        if s not in symbols_in(expr.left)]
    return []


def conjuncts(expr: Expr) -> list[Expr]:
    """A && B && (C || D) -> [A, B, C || D]."""
    if isinstance(expr, Binary) and expr.operator == "&&":
        return conjuncts(expr.left) + conjuncts(expr.right)
    return [expr]


Values = dict[str, str]  # CONFIG_-less symbol name -> value as in .config ("y", "m", "n", "64")


def _value(expr: Expr, values: Values) -> str:
    if isinstance(expr, Symbol):
        return values.get(expr.name, "n")
    if isinstance(expr, Literal):
        return expr.text
    return _NAMES[evaluate(expr, values)]


def evaluate(expr: Expr, values: Values) -> int:
    """0 (n), 1 (m) or 2 (y). Macros count as y: they probe the toolchain, not the config."""
    if isinstance(expr, Symbol):
        return TRISTATE.get(values.get(expr.name, "n"), 0)
    if isinstance(expr, Literal):
        return TRISTATE.get(expr.text, 0)
    if isinstance(expr, Macro):
        return 2
    if isinstance(expr, Not):
        return 2 - evaluate(expr.operand, values)
    if expr.operator == "&&":
        return min(evaluate(expr.left, values), evaluate(expr.right, values))
    if expr.operator == "||":
        return max(evaluate(expr.left, values), evaluate(expr.right, values))
    left, right = _value(expr.left, values), _value(expr.right, values)
    if expr.operator in ("=", "!="):
        return 2 if (left == right) == (expr.operator == "=") else 0
    try:
        a, b = int(left, 0), int(right, 0)
    except ValueError:
        return 0
    holds = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[expr.operator]
    return 2 if holds else 0


# ---------------------------------------------------------------------------------------
# Kconfig files


@dataclass(frozen=True)
class Condition:
    expr: Expr
    origin: str  # "if RUNTIME_TESTING_MENU (lib/Kconfig.debug:2269)", for the explanation


@dataclass
class Definition:
    name: str
    where: str  # file:line
    kind: str = ""  # bool, tristate, string, int, hex
    has_prompt: bool = False
    prompt_condition: Expr | None = None
    depends: list[Expr] = field(default_factory=list)
    enclosing: list[Condition] = field(default_factory=list)
    choice: str | None = None  # where the choice block starts, for members of a choice


@dataclass(frozen=True)
class Selection:
    selector: str
    condition: Expr | None
    where: str


@dataclass
class Model:
    definitions: dict[str, list[Definition]] = field(default_factory=dict)
    selected_by: dict[str, list[Selection]] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceRequest:
    path: str  # as written, macros expanded
    relative: bool  # rsource: relative to the including file
    optional: bool
    enclosing: tuple[Condition, ...]


_TYPES = ("bool", "tristate", "string", "int", "hex")
_PROMPT = re.compile(r"""^(?:"(?:[^"\\]|\\.)*"|'[^']*')\s*(?:if\s+(.+))?$""")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def parse_file(text: str, filename: str, model: Model, enclosing: tuple[Condition, ...] = (),
               variables: dict[str, str] | None = None) -> list[SourceRequest]:
    """Add the file's entries to `model`; return the files it sources, in order, each with the
    conditions around the `source` line (an `if` may span a `source`)."""
    variables = variables or {}
    stack: list[tuple[str, Condition | None]] = [("file", c) for c in enclosing]
    sources: list[SourceRequest] = []
    entry: Definition | None = None
    block: tuple[str, str] | None = None  # a menu/choice/comment being read: (kind, where)
    choice_stack: list[str] = []
    help_indent: int | None = None
    help_started = False

    def conditions() -> list[Condition]:
        return [c for _, c in stack if c is not None]

    for number, raw in _logical_lines(text):
        where = f"{filename}:{number}"
        if help_indent is not None:
            if not raw.strip():
                continue
            indent = _indent(raw)
            if not help_started:
                help_started, help_indent = True, indent
                continue
            if indent >= help_indent:
                continue
            help_indent = None
        line = _strip_comment(raw).strip()
        if not line:
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword in ("config", "menuconfig"):
            entry = Definition(name=rest, where=where, enclosing=conditions(),
                               choice=choice_stack[-1] if choice_stack else None)
            model.definitions.setdefault(rest, []).append(entry)
            block = None
        elif keyword in ("if",):
            stack.append(("if", Condition(parse_expr(rest), f"if {rest} ({where})")))
            entry, block = None, None
        elif keyword == "endif":
            _pop(stack, "if", where)
            entry, block = None, None
        elif keyword == "menu":
            stack.append(("menu", None))
            entry, block = None, ("menu", f"menu {rest} ({where})")
        elif keyword == "endmenu":
            _pop(stack, "menu", where)
            entry, block = None, None
        elif keyword == "choice":
            stack.append(("choice", None))
            choice_stack.append(where)
            entry, block = None, ("choice", f"choice ({where})")
        elif keyword == "endchoice":
            _pop(stack, "choice", where)
            choice_stack.pop()
            entry, block = None, None
        elif keyword in ("comment", "mainmenu"):
            entry, block = None, ("comment", where)
        elif keyword in ("source", "rsource", "osource", "orsource"):
            path = _expand(rest.strip("\"'"), variables)
            sources.append(SourceRequest(path, keyword in ("rsource", "orsource"),
                                         keyword.startswith("o"), tuple(conditions())))
            entry, block = None, None
        elif keyword in ("help", "---help---"):
            help_indent, help_started = _indent(raw), False
        elif line.startswith("depends on "):
            expr = parse_expr(line.removeprefix("depends on "))
            if entry is not None:
                entry.depends.append(expr)
            elif block is not None and block[0] in ("menu", "choice"):
                kind, origin = block
                stack[-1] = (kind, Condition(expr, f"{origin} depends on {render(expr)}"))
        elif entry is not None:
            _attribute(entry, keyword, rest, where, model)
    return sources


def _pop(stack: list[tuple[str, Condition | None]], kind: str, where: str) -> None:
    if not stack or stack[-1][0] != kind:
        raise ExprError(f"{where}: end{kind} without {kind}")
    stack.pop()


def _expand(path: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), path)


def _attribute(entry: Definition, keyword: str, rest: str, where: str, model: Model) -> None:
    if keyword in _TYPES or keyword in ("def_bool", "def_tristate", "prompt"):
        if keyword in _TYPES or keyword.startswith("def_"):
            entry.kind = keyword.removeprefix("def_")
        if keyword in _TYPES or keyword == "prompt":
            prompt = _PROMPT.match(rest)
            if prompt:
                entry.has_prompt = True
                entry.prompt_condition = parse_expr(prompt.group(1)) if prompt.group(1) else None
    elif keyword == "select":
        target, *condition = re.split(r"\s+if\s+", rest, maxsplit=1)
        model.selected_by.setdefault(target.strip(), []).append(
            Selection(entry.name, parse_expr(condition[0]) if condition else None, where))


def load(tree: Path, srcarch: str = "x86", on_error: Callable[[str], None] | None = None
         ) -> Model:
    """The Kconfig model of a kernel tree, following `source` from the top-level Kconfig."""
    model = Model()
    variables = {"SRCARCH": srcarch, "ARCH": srcarch, "HEADER_ARCH": srcarch}
    pending = [SourceRequest("Kconfig", False, False, ())]
    seen: set[Path] = set()
    while pending:
        request = pending.pop(0)
        path = tree / request.path  # rsource paths were made absolute below
        if path in seen:
            continue
        seen.add(path)
        try:
            text = path.read_text(errors="replace")
        except OSError:
            if not request.optional and on_error:
                on_error(f"cannot read {path}")
            continue
        relative = str(path.relative_to(tree)) if path.is_relative_to(tree) else str(path)
        try:
            found = parse_file(text, relative, model, request.enclosing, variables)
        except ExprError as error:
            if on_error:
                on_error(str(error))
            continue
        found = [SourceRequest(str(path.parent / s.path), False, s.optional, s.enclosing)
                 if s.relative else s for s in found]
        # Depth first, as Kconfig reads them, so block conditions nest correctly.
        pending[0:0] = found
    return model


# ---------------------------------------------------------------------------------------
# Explaining


def _setting(name: str, values: Values) -> str:
    return f"{name}={values.get(name, 'n')}"


def _unmet(expr: Expr, wanted: int, values: Values) -> list[Expr]:
    return [part for part in conjuncts(expr) if evaluate(part, values) < wanted]


def _describe(part: Expr, values: Values) -> str:
    names = symbols_in(part)
    shown = ", ".join(_setting(n, values) for n in names)
    return f"{render(part)} ({shown})" if names else render(part)


def explain(name: str, wanted: str, values: Values, model: Model, depth: int = 5) -> list[str]:
    """Why `name` (without CONFIG_) is not `wanted` in `values`: lines, most direct first."""
    lines: list[str] = []
    _explain(name, TRISTATE.get(wanted, 2), values, model, depth, lines, set(), "")
    return lines


def _explain(name: str, wanted: int, values: Values, model: Model, depth: int,
             lines: list[str], seen: set[str], indent: str) -> None:
    seen.add(name)
    definitions = model.definitions.get(name)
    if not definitions:
        lines.append(f"{indent}{name} is defined in no Kconfig file of this tree (renamed or "
                     "removed?)")
        return
    follow: list[str] = []
    for definition in definitions:
        reasons: list[str] = []
        for condition in definition.enclosing:
            for part in _unmet(condition.expr, wanted, values):
                reasons.append(f"it is inside `{condition.origin}`: {_describe(part, values)}")
                follow += symbols_in(part)
        for depends in definition.depends:
            for part in _unmet(depends, wanted, values):
                reasons.append(f"depends on {_describe(part, values)}")
                follow += symbols_in(part)
        visible = definition.has_prompt and (
            definition.prompt_condition is None
            or evaluate(definition.prompt_condition, values) > 0)
        if not reasons and not visible:
            selections = model.selected_by.get(name, [])
            if selections:
                selectors = ", ".join(f"{_setting(s.selector, values)}"
                                      + (f" if {render(s.condition)}" if s.condition else "")
                                      for s in selections[:8])
                more = f" and {len(selections) - 8} more" if len(selections) > 8 else ""
                reasons.append(f"it has no prompt a config can set; only `select` sets it, "
                               f"from {selectors}{more}")
            else:
                reasons.append("it has no prompt a config can set and nothing selects it")
        if not reasons and wanted == 1 and definition.kind == "bool":
            reasons.append("it is a bool: it can be y or n, not m")
        if not reasons and wanted > 0 and values.get(name, "n") != "n" and definition.choice:
            reasons.append(f"it is one choice of `choice ({definition.choice})` and another "
                           "member was chosen")
        if not reasons and wanted == 1 and values.get("MODULES", "n") != "y":
            reasons.append("m needs MODULES=y")
        if not reasons and indent:
            reasons.append(f"its dependencies hold, but the config does not ask for it: add "
                           f"CONFIG_{name}=y")
        elif not reasons:
            reasons.append(f"its dependencies hold in the result, yet it is "
                           f"{values.get(name, 'n')}: a choice or a default decided it")
        for reason in reasons:
            lines.append(f"{indent}{name} ({definition.where}): {reason}")
    if depth <= 1:
        return
    for other in dict.fromkeys(follow):
        if other not in seen and TRISTATE.get(values.get(other, "n"), 0) < 1 \
                and other in model.definitions:
            _explain(other, 2, values, model, depth - 1, lines, seen, indent + "  ")
