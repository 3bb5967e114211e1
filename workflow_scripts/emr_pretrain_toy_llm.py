"""LM pre-training of the tiny Llama on toy train text (rule pretrain_toy_llm)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.toy.pretrain import pretrain_toy_llm  # noqa: E402
from mmemory.io import atomic_write_json  # noqa: E402

torch.set_num_threads(snakemake.threads)
s = snakemake.params.settings
metrics = pretrain_toy_llm(snakemake.input.llm, snakemake.input.train, snakemake.input.val, snakemake.output.model,
                           epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                           prompt_template=snakemake.params.prompt_template, context_prob=s["context_prob"],
                           with_answers=s["with_answers"],
                           seed=snakemake.params.seed)
atomic_write_json(snakemake.output.metrics, metrics, indent=2)
