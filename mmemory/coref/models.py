"""`build_toy_coref_models`: the coref stage's tiny, offline stand-ins for Llama-3.2-1B / 3B / 3.1-8B.

One byte-level BPE tokenizer is trained on the TRAIN split's text only (every prompt and its target, exactly as
`mmemory.coref.prompts` writes them), and one randomly initialised `LlamaForCausalLM` is built per entry of
`sizes`, so the report has a model-size axis. Each model is saved with `save_pretrained` beside its tokenizer in
one directory, so every later step loads it as it loads a real checkpoint:

    AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)

Each directory is written to a hidden sibling first and renamed into place, so a kill never leaves a half-written
model behind.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.training import pretrain_copy

logger = logging.getLogger(__name__)


@dataclass
class CorefToySize(StrictConfig):
    """One tiny Llama's shape: an entry of config coref.toy_models (name -> size)."""

    SECTION = "coref.toy_models"

    hidden_size: int = 64  # model width
    num_layers: int = 2  # transformer layers
    num_heads: int = 4  # attention heads (key/value heads: half of them, as Llama-3's grouped-query attention)
    intermediate_size: int | None = None  # MLP width (None: 4 x hidden_size)
    vocab_size: int = 1024  # BPE vocabulary cap of the shared tokenizer (the largest over the entries is used)
    max_position_embeddings: int = 1024  # longest sequence the model takes
    # task-agnostic "pretraining" before the model is saved (`pretrain_copy`): random token spans, then the same
    # span again, loss on the repeat. It stands in for what a real Llama brings from pretraining (copying from its
    # context); it never sees a coref dialogue. 0: the model stays random
    pretrain_steps: int = 0  # optimizer steps
    pretrain_span: int = 32  # longest random span (a span is 4..pretrain_span tokens after a random prefix)
    pretrain_batch: int = 32  # sequences per step
    pretrain_lr: float = 3.0e-3  # AdamW peak learning rate (cosine decay, 3% warm-up)
    # a second phase on long spans, so that copying reaches across a whole prompt (copying learnt on short spans
    # does not carry over to distances of hundreds of tokens); 0: none
    pretrain_long_steps: int = 0  # optimizer steps
    pretrain_long_span: int = 128  # longest span of the second phase
    pretrain_long_batch: int = 8  # sequences per step of the second phase


def coref_corpus(train_json: str | Path, target: str = "option") -> list[str]:
    """The tokenizer's corpus: each train dialogue's prompt followed by its target in the format training will use
    (`coref.train.target`; what training shows the model)."""
    from mmemory.coref.data import load_coref
    from mmemory.coref.prompts import format_prompt
    from mmemory.coref.train import target_text

    dialogues, _ = load_coref(train_json, strict=True)
    if not dialogues:
        raise ValueError(f"{train_json}: no dialogues to train the toy tokenizer on")
    return [format_prompt(d) + target_text(d, target) for d in dialogues]


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def build_toy_coref_models(train_json: str | Path, out: dict[str, str | Path], sizes: dict[str, CorefToySize | dict],
                           seed: int = 0, target: str = "option") -> dict:
    """Train the shared tokenizer on `train_json` and write one tiny Llama (with the tokenizer) per name to
    `out[name]`; returns {name: {params, hidden_size, num_layers, ...}, "tokenizer_vocab": n} for metrics.json."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mmemory.toy.models import train_tokenizer

    sizes = {k: v if isinstance(v, CorefToySize) else CorefToySize.from_dict(v) for k, v in sizes.items()}
    missing, extra = sorted(set(sizes) - set(out)), sorted(set(out) - set(sizes))
    if missing or extra or not sizes:
        raise ValueError(f"coref toy models: the output directories ({sorted(out)}) and the sizes ({sorted(sizes)}) "
                         "must name the same models, at least one")
    vocab = max(s.vocab_size for s in sizes.values())
    tok_dir = Path(next(iter(out.values()))).parent / ".coref_tokenizer.partial"
    tokenizer = train_tokenizer(coref_corpus(train_json, target), vocab, tok_dir)
    tokenizer.padding_side = "right"  # training pads on the right; generation code sets its own side
    shutil.rmtree(tok_dir, ignore_errors=True)
    stats: dict = {"tokenizer_vocab": len(tokenizer)}
    for i, (name, s) in enumerate(sizes.items()):
        torch.manual_seed(seed + i)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=s.hidden_size,
            intermediate_size=s.intermediate_size or 4 * s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, num_key_value_heads=max(1, s.num_heads // 2),
            max_position_embeddings=s.max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        pretrain = pretrain_copy(model, tokenizer, s.pretrain_steps, s.pretrain_span, s.pretrain_batch,
                                 s.pretrain_lr, seed=seed + i)
        if pretrain["steps"]:
            logger.info("coref toy model %s: copy pretraining, %d steps in %.1f s, loss %.3f -> %.3f", name,
                        pretrain["steps"], pretrain["seconds"], pretrain["first_loss"], pretrain["last_loss"])
        if s.pretrain_long_steps:
            pretrain["long"] = pretrain_copy(model, tokenizer, s.pretrain_long_steps, s.pretrain_long_span,
                                             s.pretrain_long_batch, s.pretrain_lr, seed=seed + i + 1000)
            logger.info("coref toy model %s: long-span copy pretraining (spans up to %d), %d steps in %.1f s, "
                        "loss %.3f -> %.3f", name, s.pretrain_long_span, s.pretrain_long_steps,
                        pretrain["long"]["seconds"], pretrain["long"]["first_loss"], pretrain["long"]["last_loss"])
        final = Path(out[name])
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _replace_dir(tmp, final)
        n = model.num_parameters()
        logger.info("coref toy model %s: %.3fM parameters (hidden %d, %d layers) -> %s", name, n / 1e6,
                    s.hidden_size, s.num_layers, final)
        stats[name] = {"params": n, "hidden_size": s.hidden_size, "num_layers": s.num_layers,
                       "num_heads": s.num_heads, "pretrain": pretrain}
    return stats
