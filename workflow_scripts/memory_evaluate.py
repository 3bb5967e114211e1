"""The retrieval ablation: weights tuned on train, a method chosen on val, the table on test (rule memory_evaluate)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.stage import encoder_label, load_memory_encoder, run_ablation  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
enc = p.encoder
run_ablation(p.sessions, load_memory_encoder(enc["kind"], enc["path"], enc.get("device", "cpu")), p.methods,
             p.retrieve_k, p.store, p.workdir, dict(snakemake.output.items()), select_metric=p.tune["metric"],
             tune_metric=p.tune["metric"], tune="train" in p.sessions,
             info={"encoder": encoder_label(enc["kind"], enc["path"]), "index": p.store["index"]["type"],
                   "recency_half_life": f"{p.store['half_life']} {p.store['recency_unit']}"})
