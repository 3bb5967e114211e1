"""Train the EMR bridge for one variant (rule train_emr)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mmemory.emr.stage import run_train  # noqa: E402

torch.set_num_threads(snakemake.threads)
p, inp = snakemake.params, snakemake.input
run_train(inp.train, inp.val, inp.train_emb, inp.val_emb, p.llm, Path(snakemake.output.bridge).parent, p.bridge,
          p.train, p.emr, variant=snakemake.wildcards.variant)
