"""Gather every stage's `metrics.json` into `results/report.md`, an overview figure and `results/summary.csv`.

metrics.json convention (every stage):
    {
      "tables":   {"<caption>": [{"column": value, ...}, ...]},   # optional: rendered as markdown tables
      "headline": {"<metric>": number, ...},                       # optional: shown in the overview figure
      "headline_controls": {"<metric>": [{"control": "<name>", "value": number}, ...]},  # optional: the
                                                                   # baselines or controls drawn on that headline bar
      "splits": {"<caption or headline metric>": "train" | "val"},  # optional: a table or headline number that
                                                                   # is not on test (summary.csv's split)
      "positive_controls": [{claim, treatment, control, ...}, ...],  # the stage's claims (mmemory.controls); the
                                                                     # report opens with all of them
      "<key>": scalar or {"<key>": scalar}                         # anything else: a key/value table
    }

Numbers are stored as numbers. A number with an interval or a seed spread is an estimate,
{"value", "lo"?, "hi"?, "n"?, "sd"?, "seeds"?} (lo and hi: its 95% interval over n test items; sd: the sample sd
over `seeds` training seeds); only the report formats it, as "0.812 ± 0.010 [0.770, 0.849]" (`format_estimate`).

`results/summary.csv` holds every number of the report in long form, one per line (`summary_rows`):
stage, table, row, metric, value, lo, hi, seed, split, sd, n.
"""
from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_text, read_json_file


@dataclass
class ReportConfig(StrictConfig):
    """config report (defaults: config.yaml's)."""

    SECTION = "report"

    title: str = "mmemory: multimodal long-term memory on VisDial"  # heading of results/report.md


logger = logging.getLogger(__name__)


def is_estimate(v) -> bool:
    """Whether a metrics.json value is an estimate: {"value": number, "lo"?, "hi"?, "n"?, "sd"?, "seeds"?}."""
    return isinstance(v, dict) and "value" in v and set(v) <= ESTIMATE_KEYS


ESTIMATE_KEYS = {"value", "lo", "hi", "n", "sd", "seeds"}


def format_estimate(e: dict) -> str:
    """"0.812", "0.812 ± 0.010" (sample sd over seeds) and/or "[0.770, 0.849]" (the 95% interval)."""
    if e.get("value") is None:
        return "–"
    text = f"{e['value']:.3f}"
    if e.get("sd") is not None:
        text += f" ± {e['sd']:.3f}"
    if e.get("lo") is not None and e.get("hi") is not None:
        text += f" [{e['lo']:.3f}, {e['hi']:.3f}]"
    return text


def _fmt(v) -> str:
    if v is None:
        return "–"  # not applicable to this row (e.g. ranking metrics of a baseline that ranks nothing)
    if is_estimate(v):
        return format_estimate(v)
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
        if isinstance(v, dict) and not is_estimate(v):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            continue
        else:
            out[key] = v
    return out


NOT_SCALARS = ("tables", "headline", "headline_controls", "splits", "positive_controls")


def render_section(title: str, metrics: dict) -> str:
    """One stage's metrics as markdown."""
    parts = [f"## {title}\n"]
    for caption, rows in metrics.get("tables", {}).items():
        parts.append(f"**{caption}**\n\n" + markdown_table(rows))
    scalars = _flatten({k: v for k, v in metrics.items() if k not in NOT_SCALARS})
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


# ---------------------------------------------------------------- summary.csv

SUMMARY_COLUMNS = ("stage", "table", "row", "metric", "value", "lo", "hi", "seed", "split", "sd", "n")
SPLITS = ("train", "val", "test")


def _number(v):
    """A number for summary.csv (a bool as 0/1), or None for text, lists and missing values."""
    if isinstance(v, bool):
        return int(v)
    return v if isinstance(v, (int, float)) else None


def _line(stage: str, table: str, row: str, metric: str, v, seed="", split: str = "", n=None) -> dict | None:
    est = v if is_estimate(v) else {"value": v}
    value = _number(est.get("value"))
    if value is None:
        return None
    line = dict.fromkeys(SUMMARY_COLUMNS, "")
    line.update(stage=stage, table=table, row=row, metric=metric, value=value, seed="" if seed is None else seed,
                split=split)
    for k in ("lo", "hi", "sd", "n"):
        if est.get(k) is not None:
            line[k] = est[k]
    if line["n"] == "" and n is not None:
        line["n"] = n
    return line


def _id_columns(rows: list[dict]) -> list[str]:
    """The columns that name a row: the leading ones that hold only text (seed and split have their own fields)."""
    ids = []
    for c in dict.fromkeys(k for r in rows for k in r):
        if c in ("seed", "split"):
            continue
        if not all(r.get(c) is None or isinstance(r.get(c), str) for r in rows):
            break
        ids.append(c)
    return ids


def table_lines(stage: str, caption: str, rows: list[dict], table_split: str = "test") -> list[dict]:
    """summary.csv lines of one table: one per numeric cell. The row is named by its leading text columns; the split
    is the row's `split`, else a column named after a split (train, val, test), else the table's (metrics.json's
    `splits`; test, as the report says, unless the stage names another)."""
    ids = _id_columns(rows)
    out = []
    for r in rows:
        name = " / ".join(str(r[c]) for c in ids if r.get(c) is not None)
        for c, v in r.items():
            if c in ids or c in ("seed", "split"):
                continue
            split = r.get("split") or (c if c in SPLITS else table_split)
            line = _line(stage, caption, name, c, v, seed=r.get("seed", ""), split=split)
            if line:
                out.append(line)
    return out


def summary_rows(stage: str, metrics: dict) -> list[dict]:
    """Every number of one stage's metrics.json as summary.csv lines: its tables, headline (with its controls), the
    positive controls (row: the claim) and the key/value scalars (table and row empty, split not stated)."""
    out = []
    splits = metrics.get("splits", {})
    for caption, rows in metrics.get("tables", {}).items():
        out += table_lines(stage, caption, rows, splits.get(caption, "test"))
    for k, v in metrics.get("headline", {}).items():
        out.append(_line(stage, "headline", "", k, v, split=splits.get(k, "test")))
    for k, controls in metrics.get("headline_controls", {}).items():
        out += [_line(stage, "headline_controls", c["control"], k, c.get("value"), split=splits.get(k, "test"))
                for c in controls]
    for e in metrics.get("positive_controls", []):
        for k in ("treatment_value", "control_value", "difference", "spread", "ci95", "n_seeds", "holds"):
            out.append(_line(stage, "positive_controls", e["claim"], k, e.get(k), split="test", n=e.get("n")))
    scalars = _flatten({k: v for k, v in metrics.items() if k not in NOT_SCALARS})
    out += [_line(stage, "", "", k, v) for k, v in scalars.items()]
    return [line for line in out if line]


def stage_name(metrics_path: str | Path, results_dir: str | Path) -> str:
    """A section's name in summary.csv: its metrics.json folder under results/ (results/coref/metrics.json ->
    coref), with the file's own name when it is not metrics.json (memory/minilm/reminder_context_test)."""
    p = Path(os.path.relpath(metrics_path, results_dir))
    name = p.parent.as_posix()
    if p.name != "metrics.json":
        name += "/" + p.stem.removesuffix("_metrics")
    return name


def write_summary_csv(loaded: dict[str, dict], paths: dict[str, str], out_csv: str | Path) -> int:
    """Write summary.csv (`SUMMARY_COLUMNS`) for the loaded metrics.json files of `paths` ({title: path}); return
    its number of lines."""
    import csv

    out_csv = Path(out_csv)
    lines = [line for t, m in loaded.items() for line in summary_rows(stage_name(paths[t], out_csv.parent), m)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    atomic_write_text(out_csv, buf.getvalue())
    return len(lines)


# ---------------------------------------------------------------- the overview figure

def _headline_panels(sections: dict[str, dict]) -> list[tuple[str, list[tuple[str, float, list]]]]:
    """(stage, [(label, value on 0-1, [(control, value on 0-1), ...])]) per stage with headline numbers, each bar
    with the baselines or controls its stage names for it (`headline_controls`). BLEU headlines are 0-100 and are
    shown divided by 100 (labelled so), so that every panel has one unit: a score from 0 to 1."""
    panels = []
    for title, m in sections.items():
        bars = []
        for k, v in m.get("headline", {}).items():
            if is_estimate(v):
                v = v["value"]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                continue
            scale = 100 if "bleu" in k.lower() else 1
            controls = [(c["control"], c["value"] / scale) for c in m.get("headline_controls", {}).get(k, [])
                        if isinstance(c.get("value"), (int, float))]
            bars.append((f"{k} / 100" if scale == 100 else k, v / scale, controls))
        if bars:
            panels.append((title.replace("`", ""), bars))
    return panels


def overview_figure(sections: dict[str, dict], data_report: dict, out_png: str | Path) -> None:
    """One small panel for the prepared data (dialogues kept and dropped per split), then one per stage with its
    headline metrics, each on a 0-1 axis, and a dashed tick across each bar at each of its baselines or controls
    (chance, the question prior, the train mean), named in the panel's legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmemory.figures import save_figure

    panels = _headline_panels(sections)
    heights = [2.2] + [0.6 + 0.32 * len(bars) for _, bars in panels]
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights},
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
        ax.barh([b for b, _, _ in bars], [v for _, v, _ in bars], color="C2")
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        colours = {}  # control name -> colour; the first tick of each name carries its legend label
        for i, (_, v, controls) in enumerate(bars):
            right = max([v] + [c for _, c in controls])  # the value's label sits right of the bar and its ticks
            ax.text(min(right, 1.0) + 0.01, i, f"{v:.3g}", va="center", fontsize=8)
            for name, c in controls:
                first = name not in colours
                colour = colours.setdefault(name, f"C{(len(colours) + 3) % 10}")
                ax.plot([c, c], [i - 0.45, i + 0.45], ls="--", lw=1.5, color=colour, label=name if first else None)
        if colours:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="dashed: baseline / control",
                      title_fontsize=7, frameon=False)
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


def tensorboard_dirs(results_dir: str | Path) -> list[str]:
    """Every folder under `results_dir` that holds TensorBoard event files (one per trained model and seed), sorted."""
    root = Path(results_dir)
    return sorted({e.parent.relative_to(root).as_posix() for e in root.glob("**/events.out.tfevents.*")})


def tensorboard_section(results_dir: str | Path) -> str | None:
    """The report's one list of training logs, with the command that opens them all; None when there are none."""
    dirs = tensorboard_dirs(results_dir)
    if not dirs:
        return None
    root = Path(results_dir).as_posix()
    return ("## Training logs (TensorBoard)\n\n"
            f"`tensorboard --logdir {root}` opens every run below at once (each trainer writes its losses with "
            "TensorBoard; one folder per trained model and training seed):\n\n"
            + markdown_table([{"stage": d.split("/")[0], "folder": f"{root}/{d}"} for d in dirs]))


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
                 out_md: str | Path, out_overview: str | Path, out_csv: str | Path | None = None,
                 data_source: str = "?", train_seeds: list | None = None,
                 benchmarks_dir: str | Path | None = None, logs_dir: str | Path | None = None) -> str:
    """Write the markdown report (and, given `out_csv`, summary.csv); `sections` maps a heading to a metrics.json
    path, `figures` a PNG to a caption; `data_source` and `train_seeds` (config data.source, train_seeds) are
    named in its opening line; `logs_dir` (results/) is searched for the trainers' TensorBoard folders."""
    out_md = Path(out_md)
    loaded = {t: read_json_file(p) for t, p in sections.items()}
    data_report = read_json_file(data_report_path)
    overview_figure(loaded, data_report, out_overview)
    rel = lambda p: os.path.relpath(p, out_md.parent)  # noqa: E731
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# {title}\n",
        f"Generated {now} from this run's `results/` at commit `{_commit()}`. Data source: `{data_source}`. "
        f"Training seeds: {train_seeds}. Every number below is read from the stage's `metrics.json`; every table is on "
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
    if logs_dir and Path(logs_dir).is_dir() and (logs := tensorboard_section(logs_dir)):
        parts.append(logs)
    if out_csv is not None:
        n_lines = write_summary_csv(loaded, sections, out_csv)
        parts.append(f"## Every number as a table\n\n`{rel(out_csv)}` holds every number above in long form, one per "
                     f"line ({n_lines} lines; columns {', '.join(SUMMARY_COLUMNS)}): "
                     f"`pandas.read_csv(\"{Path(out_csv).as_posix()}\")`.\n")
    text = "\n".join(parts)
    atomic_write_text(out_md, text)
    logger.info("report written to %s (%d sections, %d figures)", out_md, len(loaded), len(figures))
    return text
