"""Draw the Grafana dashboard's panels from scrapes of a real run, without Prometheus or Grafana.

``python -m benchmark all --scrape scrapes.jsonl ...`` records the server's /metrics once a
second; this reads those scrapes and ``docs/grafana/hetu-dashboard.json``, evaluates each
panel's query, and draws the panels where the dashboard puts them::

    python -m benchmark.dashboard scrapes.jsonl --out docs/images/grafana-dashboard.png

Needs matplotlib (``pip install matplotlib``; not a dependency of hetu). It understands the
few PromQL forms the dashboard uses, no more: a selector ``name{label="v",label!="v"}``,
``rate(selector[window])``, ``sum(...)`` and ``sum by (labels) (...)``, and
``histogram_quantile(q, ...)``; ``$__rate_interval`` is :data:`RATE_WINDOW` seconds (what
Grafana makes of it for a 1 s scrape interval). A panel with a logarithmic axis in the
JSON gets one here too.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "hetu-dashboard.json"
RATE_WINDOW = 4.0
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357", "#96d98d",
          "#ca95e5", "#ff7383", "#fade2a"]

Labels = tuple  # sorted (name, value) pairs
Vector = dict  # Labels -> value, at one instant


class Scrapes:
    """The recorded scrapes: times and, per series, a value per scrape (None where absent)."""

    def __init__(self, path: Path) -> None:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            raise SystemExit(f"{path} holds no scrapes")
        self.times = [line["t"] - lines[0]["t"] for line in lines]
        self.series: dict[str, dict[Labels, list]] = defaultdict(dict)
        for index, line in enumerate(lines):
            for name, labels, value in line["samples"]:
                key = tuple(sorted(labels.items()))
                values = self.series[name].setdefault(key, [None] * len(lines))
                values[index] = value


# -- a small PromQL evaluator ---------------------------------------------------------------------


def _split_args(text: str) -> list[str]:
    depth, start, parts = 0, 0, []
    for i, char in enumerate(text):
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _call(expr: str, name: str) -> str | None:
    """The argument text of ``name( ... )`` when ``expr`` is that call, else None."""
    if expr.startswith(name + "(") and expr.endswith(")"):
        return expr[len(name) + 1:-1]
    return None


def _matches(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    found = dict(labels)
    return all((found.get(k, "") == v) == (op == "=") for k, op, v in matchers)


def _selector(text: str) -> tuple[str, list]:
    match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?", text.strip())
    if match is None:
        raise ValueError(f"unsupported selector {text!r}")
    matchers = re.findall(r'(\w+)\s*(!=|=)\s*"([^"]*)"', match.group(3) or "")
    return match.group(1), matchers


def evaluate(scrapes: Scrapes, expr: str) -> list[Vector]:
    """``expr`` at every scrape: one vector per scrape."""
    expr = expr.strip().replace("$__rate_interval", f"{RATE_WINDOW:g}s")
    if (args := _call(expr, "histogram_quantile")) is not None:
        q, inner = _split_args(args)
        return [_quantile(float(q), vector) for vector in evaluate(scrapes, inner)]
    by = re.match(r"sum\s+by\s*\(([^)]*)\)\s*\((.*)\)$", expr)
    if by is not None or (args := _call(expr, "sum")) is not None:
        keep = [name.strip() for name in by.group(1).split(",")] if by else []
        inner = by.group(2) if by else args
        return [_sum(vector, keep) for vector in evaluate(scrapes, inner)]
    if (args := _call(expr, "rate")) is not None:
        match = re.fullmatch(r"(.*)\[(\d+(?:\.\d+)?)s\]", args.strip())
        if match is None:
            raise ValueError(f"unsupported range in {expr!r}")
        return _rate(scrapes, *_selector(match.group(1)), float(match.group(2)))
    name, matchers = _selector(expr)
    series = {k: v for k, v in scrapes.series.get(name, {}).items() if _matches(k, matchers)}
    return [{k: values[i] for k, values in series.items() if values[i] is not None}
            for i in range(len(scrapes.times))]


def _sum(vector: Vector, keep: list[str]) -> Vector:
    out: dict = defaultdict(float)
    for labels, value in vector.items():
        out[tuple((k, v) for k, v in labels if k in keep)] += value
    return dict(out)


def _rate(scrapes: Scrapes, name: str, matchers: list, window: float) -> list[Vector]:
    times = scrapes.times
    out: list[Vector] = [{} for _ in times]
    for labels, values in scrapes.series.get(name, {}).items():
        if not _matches(labels, matchers):
            continue
        for i, value in enumerate(values):
            j = next((j for j in range(i) if times[j] >= times[i] - window and values[j] is not None), None)
            if value is None or j is None:
                continue
            before = values[j]
            increase = value - before if value >= before else value  # a reset starts from 0
            out[i][labels] = increase / (times[i] - times[j])
    return out


def _quantile(q: float, vector: Vector) -> Vector:
    """Prometheus's histogram_quantile: linear within the bucket the rank falls in."""
    groups: dict = defaultdict(list)
    for labels, value in vector.items():
        found = dict(labels)
        le = float(found.pop("le"))
        groups[tuple(sorted(found.items()))].append((le, value))
    out = {}
    for labels, buckets in groups.items():
        buckets.sort()
        total = buckets[-1][1]
        if total <= 0:
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for le, count in buckets:
            if count >= rank:
                if math.isinf(le):
                    out[labels] = lower
                else:
                    out[labels] = lower + (le - lower) * ((rank - below) / (count - below) if count > below else 0)
                break
            lower, below = le, count
    return out


# -- drawing ---------------------------------------------------------------------------------------


def _legend(template: str, labels: Labels) -> str:
    found = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: found.get(m.group(1), ""), template) or "value"


def _format_unit(unit: str):
    def fmt(value, _pos=None):
        if unit == "s":
            return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
        if unit == "Bps":
            for factor, suffix in ((1e6, "MB/s"), (1e3, "kB/s")):
                if abs(value) >= factor:
                    return f"{value / factor:.3g} {suffix}"
            return f"{value:.3g} B/s"
        suffix = {"reqps": "/s", "ops": "/s"}.get(unit, "")
        if abs(value) >= 1000:
            return f"{value / 1000:.3g}k{suffix}"
        return f"{value:.3g}{suffix}"
    return fmt


def draw(scrapes: Scrapes, dashboard: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(24, rows * 0.42), facecolor="#111217")
    grid = fig.add_gridspec(rows, 24, hspace=0.0, wspace=0.0, left=0.01, right=0.99, top=0.955, bottom=0.01)
    fig.suptitle(title, color="#d8d9da", fontsize=16, x=0.01, ha="left")
    minutes = [t / 60 for t in scrapes.times]
    for panel in panels:
        pos = panel["gridPos"]
        ax = fig.add_subplot(grid[pos["y"]:pos["y"] + pos["h"], pos["x"]:pos["x"] + pos["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], color="#d8d9da", fontsize=11, loc="left")
        color = 0
        for target in panel["targets"]:
            vectors = evaluate(scrapes, target["expr"])
            for labels in sorted({k for v in vectors for k in v}):
                values = [v.get(labels, math.nan) for v in vectors]
                ax.plot(minutes, values, color=COLORS[color % len(COLORS)], linewidth=1.4,
                        label=_legend(target.get("legendFormat", ""), labels))
                color += 1
        ax.yaxis.set_major_formatter(FuncFormatter(_format_unit(panel["fieldConfig"]["defaults"].get("unit", ""))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda m, _p: f"{int(m)}:{int(round(m * 60)) % 60:02d}"))
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.grid(color="#2c3235", linewidth=0.6)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.set_xlim(0, minutes[-1])  # one time range for every panel, as in Grafana
        custom = panel["fieldConfig"]["defaults"].get("custom", {})
        if custom.get("scaleDistribution", {}).get("type") == "log":
            ax.set_yscale("log")
            low, high = ax.get_ylim()  # whole decades, so that every panel has labelled ticks
            ax.set_ylim(10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high)))
            ax.yaxis.set_major_formatter(FuncFormatter(_format_unit(panel["fieldConfig"]["defaults"]["unit"])))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        else:
            ax.set_ylim(bottom=0)
        if color:
            ax.legend(loc="upper left", fontsize=7, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#c7d0d9",
                      ncol=min(4, max(1, color // 4 + 1)))
        else:
            ax.text(0.5, 0.5, "no data", color="#9fa7b3", ha="center", va="center", transform=ax.transAxes)
        # Grafana's panels have a gap between them
        box = ax.get_position()
        ax.set_position([box.x0 + 0.018, box.y0 + 0.012, box.width - 0.024, box.height - 0.04])
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    print(f"wrote {out} ({len(panels)} panels, {len(scrapes.times)} scrapes over {scrapes.times[-1]:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("scrapes", type=Path, help="JSON lines written by `python -m benchmark ... --scrape FILE`")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD, help=f"default {DASHBOARD.relative_to(ROOT)}")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"), help="the PNG to write")
    parser.add_argument("--title", default="HeTu server — rendered from real scrapes of a benchmark run")
    args = parser.parse_args(argv)
    draw(Scrapes(args.scrapes), json.loads(args.dashboard.read_text()), args.out, args.title)


if __name__ == "__main__":
    main()
