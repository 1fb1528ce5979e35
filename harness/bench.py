"""Pure: benchmark figures from the guest, beside the C selftest's figures from the same boot."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
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


# The bar for Python's side of a migration of 2 MiB or more.
TARGET_RATIO = 0.95
TARGET_MIN_BYTES = 2 * 2**20
# Fewer pairs than this show no spread worth the name: their rows claim no finding.
MIN_PAIRS_FOR_A_FINDING = 3


@dataclass(frozen=True)
class PairedRatio:
    """Python/C throughput of one table row, once per pair of runs in the same boot."""

    label: str
    size_bytes: int
    thp: bool
    direction: str
    python_gbps: tuple[float, ...]
    c_gbps: tuple[float, ...]

    @property
    def ratios(self) -> list[float]:
        return [p / c for p, c in zip(self.python_gbps, self.c_gbps, strict=True) if c > 0]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """The middle half of the pairs' ratios (quartiles): a pair that ran while the host
        was busy moves the extremes, not this."""
        if len(self.ratios) < 2:
            return self.extremes
        first, _, third = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return first, third

    @property
    def extremes(self) -> tuple[float, float]:
        return min(self.ratios), max(self.ratios)

    @property
    def finding(self) -> str:
        """What the pairs show: a side faster in the middle half of them, or no difference
        they can tell."""
        if len(self.ratios) < MIN_PAIRS_FOR_A_FINDING:
            return f"too few pairs (fewer than {MIN_PAIRS_FOR_A_FINDING})"
        low, high = self.spread
        if low > 1:
            return "Python faster"
        if high < 1:
            return "C faster"
        return "within the spread"


def paired_ratios(measurements: list[dict[str, Any]], variant: str) -> list[PairedRatio]:
    """One row per (size, THP, direction) that both sides measured in every pair."""
    seconds: dict[tuple[str, int, bool, str], dict[int, dict[str, float]]] = defaultdict(
        lambda: defaultdict(dict))
    for m in measurements:
        if m.get("kind") == "thp_migration_pair" and m.get("variant") == variant:
            key = (m["label"], int(m["size_bytes"]), bool(m["thp"]), m["direction"])
            seconds[key][int(m["pair"])][m["side"]] = float(m["seconds"])
    rows = []
    for (label, size, thp, direction), pairs in seconds.items():
        complete = [sides for _, sides in sorted(pairs.items())
                    if sides.get("python", 0) > 0 and sides.get("c", 0) > 0]
        if complete:
            gib = size / 2**30
            rows.append(PairedRatio(label, size, thp, direction,
                                    tuple(gib / s["python"] for s in complete),
                                    tuple(gib / s["c"] for s in complete)))
    return rows


def paired_table(rows: list[PairedRatio]) -> str:
    lines = [f"{'buffer':>10}  {'THP':3}  {'dir':3}  {'Python GB/s':>11}  {'C GB/s':>8}  "
             f"{'Py/C':>5}  {'quartiles':>11}  {'min-max':>11}  finding"]
    for row in rows:
        (low, high), (least, most) = row.spread, row.extremes
        lines.append(f"{row.size_bytes / 2**20:8.1f}MB  {'yes' if row.thp else 'no':3}  "
                     f"{row.direction:3}  {statistics.median(row.python_gbps):11.3f}  "
                     f"{statistics.median(row.c_gbps):8.3f}  {row.median:5.2f}  "
                     f"{low:5.2f}-{high:<5.2f}  {least:5.2f}-{most:<5.2f}  {row.finding}")
    return "\n".join(lines)


def target_line(rows: list[PairedRatio]) -> str:
    large = [r for r in rows if r.size_bytes >= TARGET_MIN_BYTES]
    if not large:
        return f"no row of {TARGET_MIN_BYTES // 2**20} MiB or more"
    met = [r for r in large if r.median >= TARGET_RATIO]
    worst = min(large, key=lambda r: r.median)
    return (f"{TARGET_MIN_BYTES // 2**20} MiB and more: median Py/C at least {TARGET_RATIO} in "
            f"{len(met)} of {len(large)} rows; the lowest {worst.median:.2f} "
            f"(quartiles {worst.spread[0]:.2f}-{worst.spread[1]:.2f}, "
            f"{worst.size_bytes / 2**20:.1f} MB, THP {'yes' if worst.thp else 'no'}, "
            f"{worst.direction})")


def summarize(measurements: list[dict[str, Any]], c_cases: list[Any],
              variants: list[str]) -> tuple[str, dict[str, Any]]:
    """The printed benchmark report and its results.json form."""
    text: list[str] = []
    data: dict[str, Any] = {"migration": {}, "read_latency": []}
    for variant in variants:
        if paired := paired_ratios(measurements, variant):
            pairs = len(paired[0].ratios)
            text.append(f"THP migration throughput [{variant}], Python against C in {pairs} "
                        f"interleaved pair{'' if pairs == 1 else 's'} (the median of the "
                        "pairs' ratios, their quartiles and extremes; a finding where the "
                        "middle half of the pairs agree):")
            text.append(paired_table(paired))
            text.append(target_line(paired))
            data.setdefault("pairs", {})[variant] = [
                {"label": r.label, "size_bytes": r.size_bytes, "thp": r.thp,
                 "direction": r.direction, "python_gbps": list(r.python_gbps),
                 "c_gbps": list(r.c_gbps), "ratios": r.ratios, "median_ratio": r.median,
                 "first_quartile_ratio": r.spread[0], "third_quartile_ratio": r.spread[1],
                 "min_ratio": r.extremes[0], "max_ratio": r.extremes[1],
                 "finding": r.finding}
                for r in paired]
            continue
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
