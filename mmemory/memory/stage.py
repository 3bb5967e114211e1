"""The memory stage's steps as functions of settings and paths (the workflow scripts call these).

    run_sessions          chain one split's dialogues into long sessions with back-referring queries
    run_ablation          score every retrieval method: choose on val, then report on test
    run_reminder_context  the top-k memories per dialogue of one split, for the reminder prompt

The ablation never looks at the test queries to pick anything: a `tuned` method gets its weights on the train
sessions, the method named `chosen` is the best on the val sessions, and only then are the test numbers computed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.io import atomic_write_json, atomic_write_text
from mmemory.memory.scoring import MemoryConfig, TuneConfig
from mmemory.memory.sessions import SessionsConfig
from mmemory.reminder.prompts import ReminderConfig
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)


@dataclass
class MemoryEncoderConfig(StrictConfig):
    """config memory.encoder: one embedding space for texts and images (defaults: config.yaml's)."""

    SECTION = "memory.encoder"

    name: str = "minilm"  # variant name: outputs go to results/memory/<name>/
    kind: str = "minilm"  # minilm (text only; images remembered by caption) | clip | imagebind
    path: str | None = None  # model directory / checkpoint (None: the packaged all-MiniLM-L6-v2)
    device: str = "cpu"  # torch device for the encoder


def load_memory_encoder(encoder: dict):
    """The encoder of config memory.encoder, wrapped so each distinct text or image is encoded once."""
    from mmemory.encoders import CachedEncoder, load_encoder

    cfg = MemoryEncoderConfig.from_dict(encoder)
    return CachedEncoder(load_encoder(cfg.kind, cfg.path, device=cfg.device))


def encoder_label(encoder: dict) -> str:
    """The encoder of config memory.encoder in words."""
    cfg = MemoryEncoderConfig.from_dict(encoder)
    return f"{cfg.kind} ({cfg.path or 'packaged all-MiniLM-L6-v2'})"


def store_settings(memory: dict, index: dict) -> dict:
    """MemoryStore's keyword arguments from the keys of config memory a rule passes (half_life, recency_unit) and
    config memory.index."""
    from mmemory.memory.index import IndexConfig

    cfg = MemoryConfig.from_dict(memory)
    return {"index": IndexConfig.from_dict(index), "half_life": cfg.half_life, "recency_unit": cfg.recency_unit}


def run_sessions(visdial_json: str, out_turns: str, out_queries: str,
                 dialogs_per_session: int = SessionsConfig.dialogs_per_session,
                 hours_between_dialogs: float = SessionsConfig.hours_between_dialogs,
                 queries_per_type: int = SessionsConfig.queries_per_type, seed: int = 0,
                 max_sessions: int | None = None) -> dict:
    """memory_sessions: (turns, queries) JSONL for one split; an empty result is an error unless max_sessions=0."""
    from mmemory.memory.sessions import build_sessions

    split = load_visdial(visdial_json)
    turns, queries = build_sessions(split, dialogs_per_session=dialogs_per_session,
                                    hours_between_dialogs=hours_between_dialogs, queries_per_type=queries_per_type,
                                    seed=seed, max_sessions=max_sessions)
    if not queries and max_sessions != 0:
        raise ValueError(f"{visdial_json}: {len(split.dialogs)} dialogues give no memory queries; lower "
                         f"memory.sessions.dialogs_per_session ({dialogs_per_session}) or add dialogues")
    for path, rows in ((out_turns, turns), (out_queries, queries)):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    stats = {"turns": len(turns), "queries": len(queries), "sessions": len({t["session_id"] for t in turns})}
    logger.info("%s: %s", visdial_json, stats)
    return stats


def choose_method(val_summaries: dict[str, dict], metric: str) -> str:
    """The method with the best `metric` on val (ties: the first listed, so simpler methods win a tie)."""
    best = None
    for name, s in val_summaries.items():
        if best is None or s[metric] > val_summaries[best][metric] + 1e-12:
            best = name
    return best


def run_ablation(sessions: dict[str, tuple[str, str]], encoder, methods: dict[str, dict[str, float]],
                 retrieve_k: int, store_kwargs: dict, workdir: str, out: dict, select_metric: str = TuneConfig.metric,
                 tune_metric: str = TuneConfig.metric, tune: bool = True, info: dict | None = None,
                 observations=None) -> dict:
    """memory_evaluate. `sessions`: {"train": (turns, queries), "val": ..., "test": ...} JSONL paths (train only
    when `tune`). Writes out["metrics"] (the report's tables, on test), out["per_query"] and out["figure"].
    observations: an observation extractor (`mmemory.memory.observations`; None, the default: none) whose
    observations of every split's turns become extra memories, in the tuning, on val and on test alike."""
    from mmemory.memory.evaluate import evaluate, load_sessions, metrics_json, plot_recall, tune_weights

    methods = dict(methods)
    info = dict(info or {})
    if tune:
        tt, tq = load_sessions(*sessions["train"])
        methods["tuned"], tune_info = tune_weights(tt, tq, encoder, f"{workdir}/tune", retrieve_k, store_kwargs,
                                                   metric=tune_metric, observations=observations)
        info["tuning"] = {"split": "train", **tune_info,
                          "weights": " ".join(f"{c}={w:g}" for c, w in methods["tuned"].items())}
    vt, vq = load_sessions(*sessions["val"])
    val = evaluate(vt, vq, encoder, methods, f"{workdir}/val", retrieve_k, store_kwargs, observations=observations)
    chosen = choose_method(val["methods"], select_metric)
    logger.info("chosen on val by %s: %s (%.4f); now scoring test", select_metric, chosen,
                val["methods"][chosen][select_metric])
    test_turns, test_queries = load_sessions(*sessions["test"])
    test = evaluate(test_turns, test_queries, encoder, methods, f"{workdir}/test", retrieve_k, store_kwargs,
                    observations=observations)
    if observations is not None:   # the extractor's counts over every split it read; the test split's memories
        info["observations"] = {"model": observations.cfg.model, **observations.counts,
                                "test_memories": test["observations"]["memories"]}
    info.update({"images_embedded": test["images_embedded"], "retrieve_k": retrieve_k,
                 "sessions": len({t["session_id"] for t in test_turns}), "turns": len(test_turns),
                 "chosen_on_val": {"method": chosen, "metric": select_metric,
                                   "val_score": round(val["methods"][chosen][select_metric], 4),
                                   "val_queries": val["methods"][chosen]["queries"]}})
    metrics = metrics_json(test, methods, info, chosen=chosen, val=val["methods"], data="chained toy sessions, test")
    atomic_write_json(out["per_query"], test["per_query"])
    plot_recall(test, out["figure"])
    atomic_write_json(out["metrics"], metrics, indent=1)
    return metrics


def run_reminder_context(visdial_json: str, encoder, k: int, dialogs_per_session: int, weights: dict[str, float],
                         store_kwargs: dict, workdir: str, out_context: str, out_metrics: str,
                         encoder_name: str = "", candidates: dict[str, dict[str, float]] | None = None,
                         chosen_metrics: str | None = None, select_k: int = ReminderConfig.memory_top_k) -> dict:
    """memory_reminder_context: top-k memories per dialogue of one split, queried with its last question.

    The weights: on val (`candidates` given), the configured `weights` and every candidate are scored by the
    recall@select_k of the needed earlier picture (the memory the earlier-picture questions need; select_k is what
    the reminder prompt shows), and the best is used (ties: the configured weights, then the first listed). On test
    (`chosen_metrics`: the val run's metrics file), the weights val chose are used and nothing is chosen."""
    from mmemory.encoders import CachedEncoder
    from mmemory.memory.context import build_reminder_context

    split = load_visdial(visdial_json)
    encoder = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    name = Path(visdial_json).stem
    metric = f"needed_picture_recall@{select_k}"
    tables = {}
    if chosen_metrics:
        chosen = json.loads(Path(chosen_metrics).read_text())["chosen"]
        context, stats = build_reminder_context(split, encoder, workdir, k=k, dialogs_per_session=dialogs_per_session,
                                                weights=chosen["weights"], store_kwargs=store_kwargs)
    else:
        runs = {}
        for cand, w in {"configured": weights, **(candidates or {})}.items():
            runs[cand] = (w, *build_reminder_context(split, encoder, workdir, k=k,
                                                     dialogs_per_session=dialogs_per_session, weights=w,
                                                     store_kwargs=store_kwargs))
        scored = {c: r[2].get(metric) for c, r in runs.items()}
        best = "configured"
        for c, v in scored.items():
            if v is not None and (scored[best] is None or v > scored[best] + 1e-12):
                best = c
        w, context, stats = runs[best]
        chosen = {"name": best, "weights": w, "chosen_on": name, "metric": metric, "value": scored[best]}
        if len(runs) > 1:
            tables[f"Weights for the reminder context, chosen on {name} by {metric} (the needed earlier picture "
                   f"among the memories the prompt shows)"] = [
                {"weights": c, "components": " ".join(f"{x}={v:g}" for x, v in r[0].items()),
                 **{key: round(r[2][key], 4) if isinstance(r[2].get(key), float) else r[2].get(key)
                    for key in ("needed_picture_recall@1", "needed_picture_recall@3", "needed_picture_recall@5",
                                "with_own_picture")},
                 "chosen": c == best} for c, r in runs.items()]
    atomic_write_json(out_context, context, indent=1)
    label = " ".join(f"{c}={w:g}" for c, w in chosen["weights"].items())
    tables[f"Memories retrieved for the reminder prompt (per {name} dialogue, queried with its last question; "
           f"weights {chosen['name']}, chosen on {chosen['chosen_on']})"] = [
        {"weights": label, **{key: round(v, 4) if isinstance(v, float) else v for key, v in stats.items()}}]
    metrics = {"tables": tables,
               "headline": {f"memory ctx has own picture ({name})": stats["with_own_picture"],
                            **({f"needed picture recall@{select_k} ({name})": stats[metric]}
                               if stats.get(metric) is not None else {})},
               "encoder": encoder_name, "retrieves_through": retrieves_through(encoder_name),
               "chosen": chosen}
    atomic_write_json(out_metrics, metrics, indent=1)
    return metrics


def observation_extractor(observations: dict | None):
    """The extractor of config memory.observations, or None when it is not enabled (the default: no server)."""
    from mmemory.memory.observations import ObservationConfig, OllamaObservationExtractor

    cfg = ObservationConfig.from_dict(observations or {})
    return OllamaObservationExtractor(cfg) if cfg.enabled else None


def evaluate_step(sessions: dict[str, tuple[str, str]], encoder: dict, memory: dict, tune: dict, index: dict,
                  workdir: str, out: dict, observations: dict | None = None) -> dict:
    """The memory_evaluate rule from its config sections (memory.encoder, memory's scoring keys, memory.tune,
    memory.index, memory.observations): weights tuned on train (when it is given), a method chosen on val, the table
    on test (`run_ablation`); with memory.observations.enabled, a local LLM's observations join the memories."""
    cfg, tune_cfg, store = MemoryConfig.from_dict(memory), TuneConfig.from_dict(tune), store_settings(memory, index)
    return run_ablation(sessions, load_memory_encoder(encoder), cfg.methods, cfg.retrieve_k, store, workdir, out,
                        select_metric=tune_cfg.metric, tune_metric=tune_cfg.metric, tune="train" in sessions,
                        info={"encoder": encoder_label(encoder), "index": store["index"].type,
                              "recency_half_life": f"{store['half_life']} {store['recency_unit']}"},
                        observations=observation_extractor(observations))


def reminder_context_step(visdial_json: str, encoder: dict, memory: dict, reminder: dict, index: dict, workdir: str,
                          out_context: str, out_metrics: str, chosen_metrics: str | None = None,
                          select_k: int = ReminderConfig.memory_top_k) -> dict:
    """The memory_reminder_context rule from its config sections (memory.encoder, memory's scoring keys,
    memory.reminder, memory.index): on val (no `chosen_metrics`) the weights are chosen among the configured ones and
    memory.methods; on test the val choice is used (`run_reminder_context`)."""
    from mmemory.memory.context import ReminderContextConfig

    rc = ReminderContextConfig.from_dict(reminder)
    return run_reminder_context(visdial_json, load_memory_encoder(encoder), rc.k, rc.dialogs_per_session, rc.weights,
                                store_settings(memory, index), workdir, out_context, out_metrics,
                                encoder_name=encoder_label(encoder),
                                candidates=None if chosen_metrics else MemoryConfig.from_dict(memory).methods,
                                chosen_metrics=chosen_metrics, select_k=select_k)


def retrieves_through(encoder_name: str) -> str:
    """What a picture is found by: its caption's text vector (MiniLM), or its image vector (CLIP / ImageBind)."""
    if encoder_name.startswith("minilm"):
        return ("the caption: a picture is stored as '[picture] <caption>' and embedded as text (MiniLM is text "
                "only); the image path is kept with the memory but no image vector is compared")
    return ("both: a picture memory has a text key (its caption) and an image vector in the encoder's shared space, "
            "and relevance is the better cosine of the two with the query's text vector (MA-LMM style)")
