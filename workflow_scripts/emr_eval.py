"""Evaluate one EMR variant and training seed on one split: beam-search BLEU-4 (nltk) +
sacreBLEU / ROUGE-L and VisDial option ranking by LM likelihood (rule eval_emr)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmemory.emr.stage import run_eval  # noqa: E402

torch.set_num_threads(snakemake.threads)
p, inp = snakemake.params, snakemake.input
run_eval(inp.data, inp.emb, p.llm, snakemake.output.metrics, inp.bridge if "bridge" in inp.keys() else None,
         p.bridge, p.train, p.eval, p.emr, snakemake.wildcards.variant, dense_json=inp.dense)
