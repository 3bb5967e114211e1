"""Gather the EMR variants on test (mean and spread over the training seeds), toy-encoder retrieval and extraction
counts into metrics.json (rule emr_metrics)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.emr.evaluate import question_prior  # noqa: E402
from mmemory.emr.report import emr_metrics  # noqa: E402

inp, p = snakemake.input, snakemake.params
emr_metrics(p.evals, inp.losses, inp.summaries, inp.extraction, inp.toy, snakemake.output.metrics,
            snakemake.output.curves, bridge=p.bridge, llm_trainable=p.llm_trainable,
            prior=question_prior(inp.train, inp.test), split="test")
