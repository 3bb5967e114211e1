"""Validate and normalize VisDial v1.0 (rule prepare_data)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.prepare import prepare_data  # noqa: E402

inp, out, params = snakemake.input, snakemake.output, snakemake.params
prepare_data(
    train_json=inp.train_json, val_json=inp.val_json, train_images=inp.train_images, val_images=inp.val_images,
    val_dense=inp.get("val_dense"), out_train=out.train, out_val=out.val, out_dense=out.val_dense,
    out_report=out.report, out_metrics=out.metrics, strict=params.strict, n_options=params.n_options,
    max_dialogs=params.max_dialogs, check_images=params.check_images,
)
