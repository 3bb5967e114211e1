"""The emr stage's steps as functions of config sections and paths (the workflow scripts call these): the toy
stand-ins (rules `train_toy_clip`, `pretrain_toy_llm`), embedding extraction (`extract_embeddings`), the bridge's
training (`train_emr`) and evaluation (`eval_emr`), and the table (`emr_metrics`).

    run_extract("test.json", "embeddings/test/index.json", "embeddings/test/metrics.json",
                config["emr"]["encoder"], "toy_clip", config["emr"]["extract"], {"device": "cpu"})
    run_train("train.json", "val.json", "embeddings/train/index.json", "embeddings/val/index.json", "toy_llm",
              "after/s0/", config["emr"]["bridge"], {**config["emr"]["train"], "seed": 0}, {"llm_trainable": True})

Each step imports what it runs when it runs, so a rule's env needs only what its step uses (extraction runs in the
imagebind env at paper scale).
"""
from __future__ import annotations

from pathlib import Path

from mmemory.io import atomic_write_json


def run_toy_clip(clip: str, train_json: str, val_json: str, out_dir: str, metrics_path: str, settings: dict,
                 seed: int = 0) -> dict:
    """The tiny CLIP trained contrastively on the toy train images and texts (`settings`: config emr.toy_clip)."""
    from mmemory.toy.pretrain import ToyClipConfig, train_toy_clip

    metrics = train_toy_clip(clip, train_json, val_json, out_dir, ToyClipConfig.from_dict(settings), seed=seed)
    atomic_write_json(metrics_path, metrics, indent=2)
    return metrics


def run_toy_llm(llm: str, train_json: str, val_json: str, out_dir: str, metrics_path: str, settings: dict,
                emr: dict, seed: int = 0) -> dict:
    """The tiny Llama pre-trained as a language model on the toy train text (`settings`: config emr.toy_llm;
    `emr`: the keys of config emr it reads, prompt_template)."""
    from mmemory.emr.lm import EmrConfig
    from mmemory.toy.pretrain import ToyLLMConfig, pretrain_toy_llm

    metrics = pretrain_toy_llm(llm, train_json, val_json, out_dir, ToyLLMConfig.from_dict(settings),
                               prompt_template=EmrConfig.from_dict(emr).prompt_template, seed=seed)
    atomic_write_json(metrics_path, metrics, indent=2)
    return metrics


def run_extract(split_json: str, index_path: str, metrics_path: str, encoder: dict, path: str | None,
                extract: dict, emr: dict) -> dict:
    """One split's image and per-round question embeddings into safetensors shards beside `index_path`; the index
    summary and the encoder's fingerprint go to `metrics_path`. `encoder`: config emr.encoder, with the model at
    `path` (its checkpoint, or the CLIP the workflow built); `extract`: config emr.extract; `emr`: the keys of config
    emr it reads (device)."""
    from mmemory.emr.data import EmrEncoderConfig, ExtractConfig, extract_split
    from mmemory.emr.lm import EmrConfig
    from mmemory.encoders import load_encoder

    enc_cfg, ext = EmrEncoderConfig.from_dict(encoder), ExtractConfig.from_dict(extract)
    enc = load_encoder(enc_cfg.kind, path, device=EmrConfig.from_dict(emr).device, batch_size=enc_cfg.batch_size)
    summary = {"encoder": enc.fingerprint,
               **extract_split(split_json, Path(index_path).parent, enc, ext.shard_size, ext.on_bad_image)}
    atomic_write_json(metrics_path, summary, indent=2)
    return summary


def lm_settings(emr: dict, *keys: str) -> dict:
    """The keyword arguments `keys` of train_emr / evaluate_emr from the keys of config emr the rule passes."""
    from dataclasses import asdict

    from mmemory.emr.lm import EmrConfig

    cfg = asdict(EmrConfig.from_dict(emr))
    return {k: cfg[k] for k in keys}


def run_train(train_json: str, val_json: str, train_index: str, val_index: str, llm: str, out_dir: str,
              bridge: dict, train: dict, emr: dict, variant: str = "after") -> dict:
    """One variant's bridge for one training seed (`train["seed"]`), written to `out_dir`
    (`mmemory.emr.train.train_emr`; `emr`: the keys of config emr it reads: llm_4bit, llm_dtype, llm_trainable,
    prompt_template, device)."""
    from mmemory.emr.train import train_emr

    return train_emr(train_json, val_json, Path(train_index).parent, Path(val_index).parent, llm, out_dir, bridge,
                     train, variant=variant, **lm_settings(emr, "llm_4bit", "llm_dtype", "llm_trainable",
                                                           "prompt_template", "device"))


def run_eval(split_json: str, index_path: str, llm: str, out_json: str, bridge_path: str | None, bridge: dict,
             train: dict, eval_cfg: dict, emr: dict, variant: str, dense_json: str | None = None) -> dict:
    """One variant and training seed on one split: beam-search answers and VisDial option ranking
    (`mmemory.emr.evaluate.evaluate_emr`). `bridge_path`: the trained bridge's safetensors (None: the untrained
    bridge of `train["seed"]`); `eval_cfg`: config emr.eval; `emr`: the keys of config emr it reads: llm_4bit,
    llm_dtype, prompt_template, device."""
    from dataclasses import asdict

    from mmemory.emr.evaluate import EmrEvalConfig, evaluate_emr

    return evaluate_emr(split_json, Path(index_path).parent, llm, out_json,
                        bridge_dir=Path(bridge_path).parent if bridge_path else None, bridge=bridge, train=train,
                        variant=variant, val_dense=dense_json, **asdict(EmrEvalConfig.from_dict(eval_cfg)),
                        **lm_settings(emr, "llm_4bit", "llm_dtype", "prompt_template", "device"))


def build_table(evals: dict[str, list[str]], losses: list[str], summaries: list[str], extraction: list[str],
                toy: list[str], train_json: str, test_json: str, out_json: str, out_png: str, bridge: dict,
                emr: dict) -> dict:
    """The EMR variants on test (mean and spread over the training seeds) beside the question-alone baseline, the
    toy stand-ins and the extraction counts: metrics.json and the loss curves (`mmemory.emr.report.emr_metrics`;
    `bridge`: config emr.bridge; `emr`: the keys of config emr it reads, llm_trainable)."""
    from mmemory.emr.evaluate import question_prior
    from mmemory.emr.report import emr_metrics

    return emr_metrics(evals, losses, summaries, extraction, toy, out_json, out_png, bridge=bridge,
                       **lm_settings(emr, "llm_trainable"), prior=question_prior(train_json, test_json), split="test")
