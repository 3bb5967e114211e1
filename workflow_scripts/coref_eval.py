"""One coref model on one split: greedy generation parsed, option likelihood, and both again with the choices rotated
(rule eval_coref)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.coref.evaluate import CorefEvalConfig, evaluate_coref  # noqa: E402

torch.set_num_threads(snakemake.threads)
evaluate_coref(snakemake.params.model, snakemake.input.test, snakemake.output.eval,
               CorefEvalConfig.from_dict(snakemake.params.eval))
