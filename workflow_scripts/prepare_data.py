"""Validate and normalize VisDial v1.0 into content-disjoint train/val/test splits (rule prepare_data)."""
from mmemory.io import setup_logging

setup_logging(snakemake.log[0])

from mmemory.prepare import DataConfig, VisDialConfig, prepare_data  # noqa: E402


def folders(name):
    """An image-folder input as a list (one folder or several)."""
    x = snakemake.input.get(name)
    return None if not x else [x] if isinstance(x, str) else list(x)


inp, params = snakemake.input, snakemake.params
data = DataConfig.from_dict(params.data)
# data.visdial is passed only when data.source is visdial: the toy data has its own val file
val_from_train = VisDialConfig.from_dict(params.visdial).val_from_train if params.visdial else None
prepare_data(
    train_json=inp.train_json, train_images=folders("train_images"), test_json=inp.test_json,
    test_images=folders("test_images"), out=dict(snakemake.output.items()), val_json=inp.get("val_json"),
    val_images=folders("val_images"), test_dense=inp.get("test_dense"), val_dense=inp.get("val_dense"),
    val_from_train=val_from_train, strict=data.strict, n_options=data.n_options, max_dialogs=data.max_dialogs,
    check_images=data.check_images, seed=params.seed,
)
