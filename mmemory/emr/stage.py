"""The emr stage's steps as functions of config sections and paths (the workflow scripts call these): the toy
stand-ins (rules `train_toy_clip`, `pretrain_toy_llm`), embedding extraction (`extract_embeddings`), the bridge's
training (`train_emr`) and evaluation (`eval_emr`), and the table (`emr_metrics`).

    run_extract("test.json", "embeddings/test/index.json", "embeddings/test/metrics.json",
                {"kind": "clip", "path": "toy_clip", "batch_size": 64, "device": "cpu"}, shard_size=4096)
    run_train("train.json", "val.json", "embeddings/train/index.json", "embeddings/val/index.json", "toy_llm",
              "after/s0/", config["emr"]["bridge"], {**config["emr"]["train"], "seed": 0})

Each step imports what it runs when it runs, so a rule's env needs only what its step uses (extraction runs in the
imagebind env at paper scale).
"""
from __future__ import annotations

from pathlib import Path

from mmemory.io import atomic_write_json


def run_toy_clip(clip: str, train_json: str, val_json: str, out_dir: str, metrics_path: str, settings: dict,
                 seed: int = 0) -> dict:
    """The tiny CLIP trained contrastively on the toy train images and texts (config emr.toy_clip)."""
    from mmemory.toy.pretrain import train_toy_clip

    metrics = train_toy_clip(clip, train_json, val_json, out_dir, epochs=settings["epochs"],
                             batch_size=settings["batch_size"], lr=settings["lr"],
                             dialog_text=settings["dialog_text"], seed=seed)
    atomic_write_json(metrics_path, metrics, indent=2)
    return metrics


def run_toy_llm(llm: str, train_json: str, val_json: str, out_dir: str, metrics_path: str, settings: dict,
                prompt_template: str, seed: int = 0) -> dict:
    """The tiny Llama pre-trained as a language model on the toy train text (config emr.toy_llm)."""
    from mmemory.toy.pretrain import pretrain_toy_llm

    metrics = pretrain_toy_llm(llm, train_json, val_json, out_dir, epochs=settings["epochs"],
                               batch_size=settings["batch_size"], lr=settings["lr"], prompt_template=prompt_template,
                               context_prob=settings["context_prob"], with_answers=settings["with_answers"],
                               seed=seed)
    atomic_write_json(metrics_path, metrics, indent=2)
    return metrics


def run_extract(split_json: str, index_path: str, metrics_path: str, encoder: dict, shard_size: int,
                on_bad_image: str = "error") -> dict:
    """One split's image and per-round question embeddings into safetensors shards beside `index_path`; the index
    summary and the encoder's fingerprint go to `metrics_path`. `encoder`: {kind, path, batch_size, device}."""
    from mmemory.emr.data import extract_split
    from mmemory.encoders import load_encoder

    enc = load_encoder(encoder["kind"], encoder["path"], device=encoder["device"], batch_size=encoder["batch_size"])
    summary = {"encoder": enc.fingerprint,
               **extract_split(split_json, Path(index_path).parent, enc, shard_size, on_bad_image)}
    atomic_write_json(metrics_path, summary, indent=2)
    return summary


def run_train(train_json: str, val_json: str, train_index: str, val_index: str, llm: str, out_dir: str,
              bridge: dict, train: dict, variant: str = "after", **settings) -> dict:
    """One variant's bridge for one training seed (`train["seed"]`), written to `out_dir`
    (`mmemory.emr.train.train_emr`; `settings`: llm_4bit, llm_dtype, llm_trainable, prompt_template, device)."""
    from mmemory.emr.train import train_emr

    return train_emr(train_json, val_json, Path(train_index).parent, Path(val_index).parent, llm, out_dir, bridge,
                     train, variant=variant, **settings)


def run_eval(split_json: str, index_path: str, llm: str, out_json: str, bridge_path: str | None, bridge: dict,
             train: dict, eval_cfg: dict, variant: str, dense_json: str | None = None, **settings) -> dict:
    """One variant and training seed on one split: beam-search answers and VisDial option ranking
    (`mmemory.emr.evaluate.evaluate_emr`). `bridge_path`: the trained bridge's safetensors (None: the untrained
    bridge of `train["seed"]`); `eval_cfg`: config emr.eval; `settings`: llm_4bit, llm_dtype, prompt_template,
    device."""
    from mmemory.emr.evaluate import evaluate_emr

    return evaluate_emr(split_json, Path(index_path).parent, llm, out_json,
                        bridge_dir=Path(bridge_path).parent if bridge_path else None, bridge=bridge, train=train,
                        variant=variant, val_dense=dense_json, num_beams=eval_cfg["num_beams"],
                        max_new_tokens=eval_cfg["max_new_tokens"], batch_dialogs=eval_cfg["batch_dialogs"],
                        max_dialogs=eval_cfg["max_dialogs"], rank_max_rounds=eval_cfg["rank_max_rounds"],
                        length_normalize=eval_cfg["length_normalize"], **settings)


def build_table(evals: dict[str, list[str]], losses: list[str], summaries: list[str], extraction: list[str],
                toy: list[str], train_json: str, test_json: str, out_json: str, out_png: str, bridge: dict,
                llm_trainable: bool = False) -> dict:
    """The EMR variants on test (mean and spread over the training seeds) beside the question-alone baseline, the
    toy stand-ins and the extraction counts: metrics.json and the loss curves (`mmemory.emr.report.emr_metrics`)."""
    from mmemory.emr.evaluate import question_prior
    from mmemory.emr.report import emr_metrics

    return emr_metrics(evals, losses, summaries, extraction, toy, out_json, out_png, bridge=bridge,
                       llm_trainable=llm_trainable, prior=question_prior(train_json, test_json), split="test")
