"""The retrieval ablation: weights tuned on train, a method chosen on val, the table on test (rule memory_evaluate)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.memory.stage import evaluate_step  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params
evaluate_step(p.sessions, p.encoder, p.memory, p.tune, p.index, p.workdir, dict(snakemake.output.items()),
              observations=p.observations)
