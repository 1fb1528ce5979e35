"""Pure: benchmark figures from the guest, beside the C selftest's figures from the same boot."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_C_BLOCK = re.compile(r"^=== (.+) \(([\d.]+) MB\) ===$")
_C_ROW = re.compile(r"^(Sys->Dev|Dev->Sys) Migration\s*\|\s*([\d.]+) ms\s*\|\s*([\d.]+) ms")
_DIRECTIONS = {"Sys->Dev": "s2d", "Dev->Sys": "d2s"}


@dataclass(frozen=True)
class Figure:
    """Mean time of one migration of `size_bytes` in one direction."""

    label: str
    size_bytes: int
    thp: bool
    direction: str  # s2d (system to device) or d2s
    seconds: float

    @property
    def gbps(self) -> float:
        return self.size_bytes / 2**30 / self.seconds if self.seconds > 0 else 0.0


def parse_c_benchmark(output: str) -> list[Figure]:
    """The tables benchmark_thp_migration prints (times in ms, THP column first)."""
    figures: list[Figure] = []
    label, size = "", 0
    for line in output.splitlines():
        line = line.strip().lstrip("#").strip()
        if block := _C_BLOCK.match(line):
            label, size = block.group(1), round(float(block.group(2)) * 2**20)
        elif (row := _C_ROW.match(line)) and label:
            direction = _DIRECTIONS[row.group(1)]
            figures.append(Figure(label, size, True, direction, float(row.group(2)) / 1e3))
            figures.append(Figure(label, size, False, direction, float(row.group(3)) / 1e3))
    return figures


def python_figures(measurements: list[dict[str, Any]], variant: str) -> list[Figure]:
    return [Figure(m["label"], int(m["size_bytes"]), bool(m["thp"]), m["direction"],
                   float(m["seconds"]))
            for m in measurements
            if m.get("kind") == "thp_migration" and m["nodeid"].endswith(f"[{variant}]")]


@dataclass(frozen=True)
class Comparison:
    label: str
    size_bytes: int
    thp: bool
    direction: str
    python_gbps: float
    c_gbps: float | None

    @property
    def ratio(self) -> float | None:
        """Python throughput over C throughput: 1.0 is parity."""
        return self.python_gbps / self.c_gbps if self.c_gbps else None


def compare(python: list[Figure], c: list[Figure]) -> list[Comparison]:
    c_by_key = {(f.size_bytes, f.thp, f.direction): f for f in c}
    rows = []
    for figure in python:
        twin = c_by_key.get((figure.size_bytes, figure.thp, figure.direction))
        rows.append(Comparison(figure.label, figure.size_bytes, figure.thp, figure.direction,
                               figure.gbps, twin.gbps if twin else None))
    return rows


def migration_table(rows: list[Comparison]) -> str:
    lines = [f"{'buffer':>10}  {'THP':3}  {'dir':3}  {'Python GB/s':>11}  {'C GB/s':>8}  "
             f"{'Py/C':>5}"]
    for row in rows:
        c = f"{row.c_gbps:8.3f}" if row.c_gbps is not None else f"{'-':>8}"
        ratio = f"{row.ratio:5.2f}" if row.ratio is not None else f"{'-':>5}"
        lines.append(f"{row.size_bytes / 2**20:8.1f}MB  {'yes' if row.thp else 'no':3}  "
                     f"{row.direction:3}  {row.python_gbps:11.3f}  {c}  {ratio}")
    return "\n".join(lines)


def read_latency_lines(measurements: list[dict[str, Any]]) -> list[str]:
    lines = []
    for m in measurements:
        if m.get("kind") != "read_latency":
            continue
        python_us = m["python_seconds"] / m["calls"] * 1e6
        c_us = m["c_seconds"] / m["calls"] * 1e6
        variant = m["nodeid"].rsplit("[", 1)[-1].rstrip("]")
        lines.append(f"1-page HMM_DMIRROR_READ [{variant}]: Python {python_us:.1f} us/call, "
                     f"C {c_us:.1f} us/call, ratio {python_us / c_us:.2f}x "
                     f"({m['calls']} calls each)")
    return lines


def c_figures(c_cases: list[Any], variant: str) -> list[Figure]:
    """Figures from the C selftest's benchmark case of `variant` (its output is the message)."""
    for case in c_cases:
        if case.nodeid.endswith(f"_device_{variant}.benchmark_thp_migration"):
            return parse_c_benchmark(case.message)
    return []


def summarize(measurements: list[dict[str, Any]], c_cases: list[Any],
              variants: list[str]) -> tuple[str, dict[str, Any]]:
    """The printed benchmark report and its results.json form."""
    text: list[str] = []
    data: dict[str, Any] = {"migration": {}, "read_latency": []}
    for variant in variants:
        rows = compare(python_figures(measurements, variant), c_figures(c_cases, variant))
        if not rows:
            continue
        text.append(f"THP migration throughput [{variant}] (mean of the iterations):")
        text.append(migration_table(rows))
        data["migration"][variant] = [
            {"label": r.label, "size_bytes": r.size_bytes, "thp": r.thp,
             "direction": r.direction, "python_gbps": r.python_gbps, "c_gbps": r.c_gbps,
             "ratio": r.ratio} for r in rows]
    latency = read_latency_lines(measurements)
    text += latency
    data["read_latency"] = [m for m in measurements if m.get("kind") == "read_latency"]
    return "\n".join(text) or "no benchmark figures were recorded", data
