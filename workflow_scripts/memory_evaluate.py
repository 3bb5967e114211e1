"""Rule memory_evaluate: replay the memory sessions through MemoryStore, one store per method; write the ablation.
A `tuned` method gets its weights by grid search on the training-split sessions (never on the evaluated ones)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch

from mmemory.encoders import load_encoder
from mmemory.io import atomic_write_json
from mmemory.memory.evaluate import CachedEncoder, evaluate, load_sessions, metrics_json, plot_recall, tune_weights

torch.set_num_threads(snakemake.threads)
cfg = snakemake.params.memory
turns, queries = load_sessions(snakemake.input.turns, snakemake.input.queries)
encoder = CachedEncoder(load_encoder(cfg["encoder"]["kind"], cfg["encoder"]["path"],
                                     device=cfg["encoder"].get("device", "cpu")))
store_kwargs = {"index": cfg["index"], "half_life": cfg["half_life"], "recency_unit": cfg["recency_unit"]}
methods = dict(cfg["methods"])
info = {}
if cfg["tune"]["sessions"]:
    tune_turns, tune_queries = load_sessions(snakemake.input.tune_turns, snakemake.input.tune_queries)
    methods["tuned"], tune_info = tune_weights(tune_turns, tune_queries, encoder, snakemake.params.workdir + "_tune",
                                               cfg["retrieve_k"], store_kwargs, metric=cfg["tune"]["metric"])
    info["tuning"] = {"split": cfg["tune"]["split"], **tune_info,
                      "weights": " ".join(f"{c}={w:g}" for c, w in methods["tuned"].items())}
result = evaluate(turns, queries, encoder, methods, snakemake.params.workdir, cfg["retrieve_k"], store_kwargs)
info.update({"encoder": f"{cfg['encoder']['kind']} ({cfg['encoder']['path'] or 'packaged all-MiniLM-L6-v2'})",
             "images_embedded": result["images_embedded"], "index": cfg["index"]["type"],
             "recency_half_life": f"{cfg['half_life']} {cfg['recency_unit']}", "retrieve_k": cfg["retrieve_k"],
             "sessions": len({t["session_id"] for t in turns}), "turns": len(turns)})
atomic_write_json(snakemake.output.per_query, result["per_query"])
plot_recall(result, snakemake.output.figure)
atomic_write_json(snakemake.output.metrics, metrics_json(result, methods, info), indent=1)
