"""Evaluate one EMR variant and training seed on one split: beam-search BLEU-4 (nltk) +
sacreBLEU / ROUGE-L and VisDial option ranking by LM likelihood (rule eval_emr)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mmemory.emr.evaluate import evaluate_emr  # noqa: E402

torch.set_num_threads(snakemake.threads)
p, inp = snakemake.params, snakemake.input
e = p.eval
evaluate_emr(inp.data, Path(inp.emb).parent, p.llm, snakemake.output.metrics,
             bridge_dir=Path(inp.bridge).parent if "bridge" in inp.keys() else None, bridge=p.bridge, train=p.train,
             variant=snakemake.wildcards.variant, val_dense=inp.dense, num_beams=e["num_beams"],
             max_new_tokens=e["max_new_tokens"], batch_dialogs=e["batch_dialogs"], max_dialogs=e["max_dialogs"],
             rank_max_rounds=e["rank_max_rounds"], length_normalize=e["length_normalize"], llm_4bit=p.llm_4bit,
             llm_dtype=p.llm_dtype, prompt_template=p.prompt_template, device=p.device)
