"""Gather every stage's `metrics.json` into `results/report.md`, plus an overview figure.

metrics.json convention (every stage):
    {
      "tables":   {"<caption>": [{"column": value, ...}, ...]},   # optional: rendered as markdown tables
      "headline": {"<metric>": number, ...},                       # optional: shown in the overview figure
      "positive_controls": [{claim, treatment, control, ...}, ...],  # the stage's claims (mmemory.controls); the
                                                                     # report opens with all of them
      "<key>": scalar or {"<key>": scalar}                         # anything else: a key/value table
    }
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from mmemory.io import atomic_write_text

logger = logging.getLogger(__name__)


def _fmt(v) -> str:
    if v is None:
        return "–"  # not applicable to this row (e.g. ranking metrics of a baseline that ranks nothing)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v[:8]) + (" ..." if len(v) > 8 else "")
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    """Rows of dicts -> a GitHub markdown table (columns in first-seen order)."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            continue
        else:
            out[key] = v
    return out


def render_section(title: str, metrics: dict) -> str:
    """One stage's metrics as markdown."""
    parts = [f"## {title}\n"]
    for caption, rows in metrics.get("tables", {}).items():
        parts.append(f"**{caption}**\n\n" + markdown_table(rows))
    scalars = _flatten({k: v for k, v in metrics.items() if k not in ("tables", "headline", "positive_controls")})
    if scalars:
        parts.append(markdown_table([{"metric": k, "value": v} for k, v in scalars.items()]))
    return "\n".join(parts)


def controls_section(sections: dict[str, dict]) -> str:
    """The report's opening table: every stage's positive controls, holding or not (`mmemory.controls`)."""
    from mmemory.controls import table_rows

    rows = [row for t, m in sections.items() for row in table_rows(t.replace("`", ""), m.get("positive_controls", []))]
    held = sum(r["holds"] == "yes" for r in rows)
    intro = ("Each row is a claim this run makes, its treatment beside the control that isolates it. A claim holds "
             "only when the difference is larger than both its seed-to-seed spread and its 95% interval over the "
             "test items (`at_least`: not lower by more than that; `within`: no larger than that). "
             f"{held} of {len(rows)} claims hold.\n\n")
    return "## What this run shows\n\n" + intro + markdown_table(rows)


def _headline_panels(sections: dict[str, dict]) -> list[tuple[str, list[tuple[str, float]]]]:
    """(stage, [(label, value on 0-1)]) per stage with headline numbers. BLEU headlines are 0-100 and are shown
    divided by 100 (labelled so), so that every panel has one unit: a score from 0 to 1."""
    panels = []
    for title, m in sections.items():
        bars = []
        for k, v in m.get("headline", {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                continue
            bars.append((f"{k} / 100", v / 100) if "bleu" in k.lower() else (k, float(v)))
        if bars:
            panels.append((title.replace("`", ""), bars))
    return panels


def overview_figure(sections: dict[str, dict], data_report: dict, out_png: str | Path) -> None:
    """One small panel for the prepared data (dialogues kept and dropped per split), then one per stage with its
    headline metrics, each on a 0-1 axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    panels = _headline_panels(sections)
    heights = [2.2] + [0.6 + 0.32 * len(bars) for _, bars in panels]
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, sum(heights)), gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    ax = axes[0][0]
    splits = list(data_report.get("kept", {}))
    kept = [data_report["kept"][s] for s in splits]
    dropped = [data_report.get("dropped", {}).get(s, 0) for s in splits]
    ax.barh(splits, kept, label="kept")
    ax.barh(splits, dropped, left=kept, label="dropped")
    ax.invert_yaxis()
    ax.set_title("prepared data (items per split)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    for ax, (title, bars) in zip((a[0] for a in axes[1:]), panels):
        ax.barh([b for b, _ in bars], [v for _, v in bars], color="C2")
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        for i, (_, v) in enumerate(bars):
            ax.text(min(v, 1.0) + 0.01, i, f"{v:.3g}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    axes[-1][0].set_xlabel("score (0-1)")
    fig.tight_layout()
    save_figure(fig, out_png, dpi=100)


def _commit(cwd: str | Path = ".") -> str:
    """The checkout's commit (with -dirty when it has local changes), or "unknown" outside a git checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def benchmark_table(benchmarks_dir: str | Path) -> list[dict]:
    """One row per rule from Snakemake `benchmark:` files (wall seconds, peak RSS), slowest first."""
    import csv

    rows = []
    for tsv in sorted(Path(benchmarks_dir).glob("**/*.tsv")):
        with open(tsv, newline="") as f:
            recs = list(csv.DictReader(f, delimiter="\t"))
        if not recs:
            continue
        num = lambda k: float(recs[-1].get(k) or "nan") if recs[-1].get(k) not in ("NA", "-") else float("nan")  # noqa: E731
        rows.append({"job": str(tsv.relative_to(benchmarks_dir).with_suffix("")), "wall_s": num("s"),
                     "max_rss_mb": num("max_rss")})
    return sorted(rows, key=lambda r: -r["wall_s"])


def _owning_section(figure: str, sections: dict[str, str]) -> str | None:
    """The one section a figure belongs to: the one whose metrics.json folder shares the longest path prefix."""
    fig = Path(figure).parts

    def shared(metrics_path: str) -> int:
        n = 0
        for a, b in zip(fig, Path(metrics_path).parent.parts):
            if a != b:
                break
            n += 1
        return n

    best = max(sections, key=lambda t: shared(sections[t]), default=None)
    return best if best is not None and shared(sections[best]) > 1 else None


def build_report(title: str, sections: dict[str, str], figures: dict[str, str], data_report_path: str,
                 out_md: str | Path, out_overview: str | Path, config: dict | None = None,
                 benchmarks_dir: str | Path | None = None) -> str:
    """Write the markdown report; `sections` maps a heading to a metrics.json path, `figures` a PNG to a caption."""
    out_md = Path(out_md)
    loaded = {t: json.loads(Path(p).read_text()) for t, p in sections.items()}
    data_report = json.loads(Path(data_report_path).read_text())
    overview_figure(loaded, data_report, out_overview)
    rel = lambda p: os.path.relpath(p, out_md.parent)  # noqa: E731
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = (config or {}).get("data", {}).get("source", "?")
    seeds = (config or {}).get("train_seeds")
    parts = [
        f"# {title}\n",
        f"Generated {now} from this run's `results/` at commit `{_commit()}`. Data source: `{source}`. "
        f"Training seeds: {seeds}. Every number below is read from the stage's `metrics.json`; every table is on "
        "the test split unless its title says otherwise.\n",
        controls_section(loaded),
        f"![overview]({rel(out_overview)})\n\n_Prepared data and each stage's headline metrics._\n",
    ]
    if data_report.get("items"):
        parts.append(
            f"**Dropped items:** {len(data_report['items'])} (see `results/data/data_report.json`): "
            + ", ".join(f"{k} ({v})" for k, v in data_report.get("reasons", {}).items()) + "\n"
        )
    owner = {fig: _owning_section(fig, sections) for fig in figures}
    for t, m in loaded.items():
        parts.append(render_section(t, m))
        for fig, caption in figures.items():
            if owner[fig] == t:
                parts.append(f"![{caption}]({rel(fig)})\n\n_{caption}_\n")
    if benchmarks_dir and Path(benchmarks_dir).is_dir():
        rows = benchmark_table(benchmarks_dir)
        total = sum(r["wall_s"] for r in rows if r["wall_s"] == r["wall_s"])
        parts.append(f"## Run time\n\nWall time of each job (Snakemake `benchmark:`), {total:.0f} s in all "
                     "(jobs may run in parallel).\n\n" + markdown_table(rows))
    text = "\n".join(parts)
    atomic_write_text(out_md, text)
    logger.info("report written to %s (%d sections, %d figures)", out_md, len(loaded), len(figures))
    return text
