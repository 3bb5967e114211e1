"""Gather the EMR variants, toy-encoder retrieval and extraction counts into metrics.json (rule emr_metrics)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.emr.evaluate import question_prior  # noqa: E402
from mmemory.emr.report import emr_metrics  # noqa: E402

inp = snakemake.input
emr_metrics(inp.evals, inp.losses, inp.summaries, inp.extraction, inp.toy, snakemake.output.metrics,
            snakemake.output.curves, bridge=snakemake.params.bridge, llm_trainable=snakemake.params.llm_trainable,
            prior=question_prior(inp.train, inp.val))
