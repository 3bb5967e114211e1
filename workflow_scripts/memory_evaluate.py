"""The retrieval ablation: weights tuned on train, a method chosen on val, the table on test (rule memory_evaluate)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.scoring import MemoryConfig, TuneConfig  # noqa: E402
from mmemory.memory.stage import encoder_label, load_memory_encoder, run_ablation, store_settings  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
memory, tune, store = MemoryConfig.from_dict(p.memory), TuneConfig.from_dict(p.tune), store_settings(p.memory, p.index)
run_ablation(p.sessions, load_memory_encoder(p.encoder), memory.methods, memory.retrieve_k, store, p.workdir,
             dict(snakemake.output.items()), select_metric=tune.metric, tune_metric=tune.metric,
             tune="train" in p.sessions,
             info={"encoder": encoder_label(p.encoder), "index": store["index"].type,
                   "recency_half_life": f"{store['half_life']} {store['recency_unit']}"})
