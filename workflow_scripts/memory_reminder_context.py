"""Rule memory_reminder_context: top-k memories per val dialogue, queried with its last round's question."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch

from mmemory.encoders import load_encoder
from mmemory.io import atomic_write_json
from mmemory.memory.context import build_reminder_context
from mmemory.visdial import load_visdial

torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.memory
rc = cfg["reminder"]
encoder = load_encoder(cfg["encoder"]["kind"], cfg["encoder"]["path"], device=cfg["encoder"].get("device", "cpu"))
context, stats = build_reminder_context(
    load_visdial(snakemake.input.val), encoder, snakemake.params.workdir, k=rc["k"],
    dialogs_per_session=rc["dialogs_per_session"], weights=rc["weights"],
    store_kwargs={"index": cfg["index"], "half_life": cfg["half_life"], "recency_unit": cfg["recency_unit"]})
atomic_write_json(snakemake.output.context, context, indent=1)
weights = " ".join(f"{c}={w:g}" for c, w in rc["weights"].items())
atomic_write_json(snakemake.output.metrics, {
    "tables": {"Memories retrieved for the reminder prompt (per val dialogue, queried with its last question)": [
        {"weights": weights, **{k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()}}]},
    "headline": {"memory ctx has own picture": stats["with_own_picture"]},
    "encoder": f"{cfg['encoder']['kind']} ({cfg['encoder']['path'] or 'packaged all-MiniLM-L6-v2'})"}, indent=1)
