"""Retrieved memories for the `<reminder>` prompt: `results/memory/reminder_context_<split>.json`.

    {"<image_id>": [{"text": str, "image": str or null, "score": float, "source": "<image_id>:<round>"}, ...]}

(top-k per dialogue of the evaluated split, val or test; `source` is the provenance: round 0 is the picture and its
caption.)

The dialogues are chained per user and replayed through a `MemoryStore`: by their `memory.user` key when they
carry one (the toy users of `mmemory.toy.visdial`), else `dialogs_per_session` at a time in image-id order. For each
dialogue the store holds exactly what is known before its last round is answered: the earlier dialogues of its
session (all their rounds), this dialogue's image + caption and its rounds 1..n-1. It is queried with the LAST round's
question; only then is the last round itself remembered (for the dialogues that come after it). The last round's
answer is therefore never in its own dialogue's context: `leaks()` checks that, and the stage fails if it finds one.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmemory.config import ConfigError, StrictConfig
from mmemory.memory.scoring import check_weights
from mmemory.memory.sessions import SessionsConfig
from mmemory.memory.store import MemoryStore
from mmemory.visdial import VisDialSplit

logger = logging.getLogger(__name__)


@dataclass
class ReminderContextConfig(StrictConfig):
    """config memory.reminder: the memories retrieved for the reminder stage's memory variants (defaults:
    config.yaml's)."""

    SECTION = "memory.reminder"

    k: int = 5  # memories per dialogue
    dialogs_per_session: int = 8  # dialogues chained into one memory session (earlier ones stay remembered)
    # the configured weights (priors on their own 0-1 scale; docs/memory.md); val may choose a memory.methods entry
    weights: dict[str, float] = field(default_factory=lambda: {"relevance": 1.0, "neighbours": 0.5, "recency": 2.0,
                                                               "saliency": 2.0})

    def __post_init__(self):
        super().__post_init__()
        try:
            check_weights(self.weights)
        except ValueError as e:  # a misspelt component fails when the config is read, not at the first query
            raise ConfigError(f"config {self.SECTION}: weights: {e}") from e


def image_memory_text(caption: str) -> str:
    """How a shared picture reads in a prompt: the caption stands in for the image for text-only readers."""
    return f"[picture] {caption}"


def round_memory_text(question: str, answer: str) -> str:
    return f"{question} {answer}"


def user_chains(dialogs: list[dict], dialogs_per_session: int) -> list[list[dict]]:
    """The dialogues of each user in order: grouped by `memory.user` when every dialogue names one (toy users),
    else consecutive blocks of `dialogs_per_session` in image-id order (real VisDial has no users)."""
    dialogs = sorted(dialogs, key=lambda d: d["image_id"])
    if dialogs and all(isinstance(d.get("memory"), dict) and d["memory"].get("user") for d in dialogs):
        users: dict[str, list[dict]] = {}
        for d in dialogs:
            users.setdefault(str(d["memory"]["user"]), []).append(d)
        return list(users.values())
    return [dialogs[i:i + dialogs_per_session] for i in range(0, len(dialogs), dialogs_per_session)]


def asks_about(dialog: dict) -> int | None:
    """The image id of the earlier picture a dialogue's last question asks about (toy users), else None."""
    m = dialog.get("memory")
    return m.get("asks_about") if isinstance(m, dict) else None


def needed_rank(dialog: dict, memories: list[dict]) -> int | None:
    """1-based rank of the earlier picture's memory (source "<image_id>:0") among a dialogue's memories; None when
    it is absent. Only for dialogues whose last question asks about an earlier picture."""
    want = f"{asks_about(dialog)}:0"
    return next((i for i, m in enumerate(memories, 1) if str(m.get("source")) == want), None)


def needed_recall(split: VisDialSplit, context: dict, ks=(1, 3, 5)) -> dict:
    """Recall@k of the needed earlier picture over the dialogues whose last question asks about one."""
    ranks = [needed_rank(d, context.get(str(d["image_id"]), [])) for d in split.dialogs if asks_about(d) is not None]
    out = {"earlier_picture_questions": len(ranks)}
    for k in ks:
        out[f"needed_picture_recall@{k}"] = (sum(r is not None and r <= k for r in ranks) / len(ranks)) if ranks else None
    return out


def build_reminder_context(split: VisDialSplit, encoder: Any, workdir: str | Path, k: int = ReminderContextConfig.k,
                           dialogs_per_session: int = ReminderContextConfig.dialogs_per_session,
                           weights: dict[str, float] | None = None, store_kwargs: dict | None = None,
                           start: str = "2024-01-01T09:00:00Z",
                           hours_between_dialogs: float = SessionsConfig.hours_between_dialogs) -> tuple[dict, dict]:
    """(context, stats): the top-k memories per dialogue, queried with its last round's question."""
    from mmemory.encoders import CachedEncoder

    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    chains = user_chains(split.dialogs, dialogs_per_session)
    dialogs = [d for chain in chains for d in chain]
    position = {d["image_id"]: (s, i) for s, chain in enumerate(chains) for i, d in enumerate(chain)}
    cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
    cached.warm([image_memory_text(d["caption"]) for d in dialogs] + [d["caption"] for d in dialogs]
                + [round_memory_text(split.question(r), split.answer(r)) for d in dialogs for r in d["dialog"]]
                + [split.question(r) for d in dialogs for r in d["dialog"][-1:]],
                [d["image_path"] for d in dialogs if d.get("image_path")])
    store = MemoryStore(workdir, encoder=cached, update_access=True, **{"synchronous": "NORMAL", **(store_kwargs or {})})
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    context: dict[str, list[dict]] = {}
    own_image = own_rounds = earlier = 0
    for dialog in tqdm(dialogs, desc="reminder context", unit="dialog"):
        s, d = position[dialog["image_id"]]
        session = str((dialog.get("memory") or {}).get("user") or f"{split.split}-chain{s:03d}")
        t = t0 + timedelta(days=s, hours=d * hours_between_dialogs)
        rounds = dialog["dialog"]
        if not rounds:
            raise ValueError(f"{split.path}: dialogue {dialog['image_id']} has no rounds; it cannot be evaluated")
        items = [dict(text=image_memory_text(dialog["caption"]), image=dialog.get("image_path"),
                      caption=dialog["caption"], session=session, timestamp=t.timestamp(), speaker="user",
                      source=f"{dialog['image_id']}:0")]
        items += [dict(text=round_memory_text(split.question(r), split.answer(r)), session=session, speaker="assistant",
                       timestamp=(t + timedelta(minutes=i)).timestamp(), source=f"{dialog['image_id']}:{i}")
                  for i, r in enumerate(rounds[:-1], 1)]
        store.add_many(items)
        now = t + timedelta(minutes=len(rounds))
        hits = store.search(query_text=split.question(rounds[-1]), now=now.timestamp(), before=now.timestamp(),
                            k=k, weights=weights, session=session)  # this user's memories only
        context[str(dialog["image_id"])] = [{"text": h.memory.text, "image": h.memory.image,
                                             "score": round(h.score, 6), "source": h.memory.source} for h in hits]
        for h in hits:
            own = h.memory.source.split(":")[0] == str(dialog["image_id"])
            own_image += own and h.memory.image is not None
            own_rounds += own and h.memory.image is None
            earlier += not own
        # Only now is the last round known; later dialogues may remember it.
        store.add(round_memory_text(split.question(rounds[-1]), split.answer(rounds[-1])), session=session,
                  speaker="assistant", timestamp=(now + timedelta(minutes=1)).timestamp(),
                  source=f"{dialog['image_id']}:{len(rounds)}")
    store.close()
    bad = leaks(split, context)
    if bad:
        raise AssertionError(f"reminder context leaks the target answer of {len(bad)} dialogue(s), e.g. {bad[:3]}")
    n = max(len(dialogs), 1)
    stats = {"dialogues": len(dialogs), "k": k,
             "with_own_picture": sum(any(c["image"] == dg.get("image_path") and c["image"] for c in context[str(dg["image_id"])])
                                     for dg in dialogs) / n,
             "mean_own_rounds": own_rounds / n, "mean_own_picture": own_image / n,
             "mean_from_earlier_dialogues": earlier / n, "leaks": len(bad),
             "same_question_and_answer_from_another_dialogue": same_qa_elsewhere(split, context),
             **needed_recall(split, context)}
    return context, stats


def leaks(split: VisDialSplit, context: dict) -> list[str]:
    """Image ids whose context holds their own last round: by provenance ("<image_id>:<last round>") or, for memories
    of the same dialogue, by text (its last question followed by its answer). A dialogue whose last round repeats one
    of its earlier rounds word for word (the toy generator can repeat a question) shows that text in the conversation
    window anyway; the text check does not apply to it, the provenance check does."""
    bad = []
    for dialog in split.dialogs:
        iid, last = str(dialog["image_id"]), dialog["dialog"][-1]
        target = round_memory_text(split.question(last), split.answer(last))
        if target in {round_memory_text(split.question(r), split.answer(r)) for r in dialog["dialog"][:-1]}:
            target = "\0"  # never a substring of a memory text
        for c in context.get(iid, []):
            src = str(c.get("source") or "")
            if src == f"{iid}:{len(dialog['dialog'])}" or (src.split(":")[0] == iid and target in c["text"]):
                bad.append(iid)
                break
    return bad


def same_qa_elsewhere(split: VisDialSplit, context: dict) -> int:
    """How many contexts hold another dialogue's round with the same question AND answer as the evaluated one
    (a chance coincidence, e.g. "is anything orange? no" twice; counted for transparency, never filtered)."""
    n = 0
    for dialog in split.dialogs:
        iid, last = str(dialog["image_id"]), dialog["dialog"][-1]
        target = round_memory_text(split.question(last), split.answer(last))
        n += any(target == c["text"] for c in context.get(iid, []) if str(c.get("source", "")).split(":")[0] != iid)
    return n
