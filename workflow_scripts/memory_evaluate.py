"""Rule memory_evaluate: replay the memory sessions through MemoryStore, one store per method; write the ablation."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch

from mmemory.encoders import load_encoder
from mmemory.io import atomic_write_json
from mmemory.memory.evaluate import evaluate, load_sessions, metrics_json, plot_recall

torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.memory
turns, queries = load_sessions(snakemake.input.turns, snakemake.input.queries)
encoder = load_encoder(cfg["encoder"]["kind"], cfg["encoder"]["path"], device=cfg["encoder"].get("device", "cpu"))
store_kwargs = {"index": cfg["index"], "half_life": cfg["half_life"], "recency_unit": cfg["recency_unit"]}
result = evaluate(turns, queries, encoder, cfg["methods"], snakemake.params.workdir, cfg["retrieve_k"], store_kwargs)
info = {"encoder": f"{cfg['encoder']['kind']} ({cfg['encoder']['path'] or 'packaged all-MiniLM-L6-v2'})",
        "images_embedded": result["images_embedded"], "index": cfg["index"]["type"],
        "recency_half_life": f"{cfg['half_life']} {cfg['recency_unit']}", "retrieve_k": cfg["retrieve_k"],
        "sessions": len({t["session_id"] for t in turns}), "turns": len(turns)}
atomic_write_json(snakemake.output.per_query, result["per_query"])
plot_recall(result, snakemake.output.figure)
atomic_write_json(snakemake.output.metrics, metrics_json(result, cfg["methods"], info), indent=1)
