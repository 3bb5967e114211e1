"""One coref model on one split: greedy generation parsed, option likelihood, and both again with the choices rotated
(rule eval_coref)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.coref.stage import run_eval  # noqa: E402

torch.set_num_threads(snakemake.threads)
run_eval(snakemake.params.model, snakemake.input.test, snakemake.output.eval, snakemake.params.eval,
         untuned=snakemake.wildcards.variant == "before")
