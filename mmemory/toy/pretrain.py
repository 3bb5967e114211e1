"""Toy stand-ins for the paper's pretrained models, trained by the workflow on the toy TRAIN split only.

- `train_toy_clip`: contrastive (CLIP loss) training of the tiny CLIP on toy images and their captions, so that toy
  embeddings carry image content. Scored by image->caption R@1 on toy val against chance.
- `pretrain_toy_llm`: language-model pre-training of the tiny Llama on "question: ... answer: ..." text of the train
  dialogues (no images). It stands in for the pretrained Llama-3.2-1B, which the bridge then uses frozen.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmemory.config import StrictConfig
from mmemory.emr.lm import EmrConfig, TextCodec
from mmemory.encoders import clip_text_inputs, image_features, open_image, text_features
from mmemory.visdial import load_visdial

logger = logging.getLogger(__name__)


@dataclass
class ToyClipConfig(StrictConfig):
    """config emr.toy_clip: contrastive training of the tiny CLIP (defaults: config.yaml's)."""

    SECTION = "emr.toy_clip"

    epochs: int = 60  # passes over the train images and their texts
    batch_size: int = 64  # image-caption pairs per step (the contrastive negatives)
    lr: float = 0.002  # AdamW peak learning rate (one-cycle)
    dialog_text: bool = False  # also pair images with their dialogue rounds, not only their captions


@dataclass
class ToyLLMConfig(StrictConfig):
    """config emr.toy_llm: LM pre-training of the tiny Llama on train text (defaults: config.yaml's)."""

    SECTION = "emr.toy_llm"

    epochs: int = 3  # passes over the train question/answer text
    batch_size: int = 64  # sequences per step
    lr: float = 0.003  # AdamW peak learning rate (one-cycle)
    context_prob: float = 0.5  # share of sequences with the caption as context where the soft tokens later go
    with_answers: bool = False  # false: captions and questions only, like a general LM that never learnt the task


def _captions_and_images(path):
    split = load_visdial(path)
    return [d["caption"] for d in split.dialogs], [d["image_path"] for d in split.dialogs]


def _dialog_texts(path) -> list[list[str]]:
    """Per dialogue, its caption and each round as "question answer" text: the image-text pairs a dialogue gives."""
    split = load_visdial(path)
    return [[d["caption"]] + [f"{split.question(r)} {split.answer(r)}" for r in d["dialog"]] for d in split.dialogs]


@torch.no_grad()
def caption_retrieval(model, processor, tokenizer, images: list[str], captions: list[str], max_len: int) -> dict:
    """Image->caption retrieval over a split: R@1 counts a hit when the top caption's TEXT equals the image's own
    (toy captions repeat); chance is the expected R@1 of a random ranking under the same rule."""
    model.eval()
    pix = processor(images=[open_image(p) for p in images], return_tensors="pt")["pixel_values"]
    ids, mask = clip_text_inputs(tokenizer, captions, max_len)
    im = torch.nn.functional.normalize(image_features(model, pix), dim=-1)
    tx = torch.nn.functional.normalize(text_features(model, ids, mask), dim=-1)
    top = (im @ tx.T).argmax(1).tolist()
    hits = [captions[j] == captions[i] for i, j in enumerate(top)]
    chance = float(np.mean([captions.count(c) / len(captions) for c in captions]))
    return {"r@1": float(np.mean(hits)), "chance": chance, "n": len(images)}


def train_toy_clip(clip_in: str, train_json: str, val_json: str, out_dir: str, cfg: ToyClipConfig,
                   seed: int = 0) -> dict:
    """Train the tiny CLIP contrastively on train images + texts; save it (model, image processor, tokenizer).

    Each epoch pairs every image with one of its texts: the caption, or (cfg.dialog_text) one of its dialogue rounds
    as "question answer"."""
    epochs, batch_size, lr = cfg.epochs, cfg.batch_size, cfg.lr
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel.from_pretrained(clip_in)
    processor = AutoImageProcessor.from_pretrained(clip_in)
    tokenizer = AutoTokenizer.from_pretrained(clip_in)
    max_len = model.config.text_config.max_position_embeddings
    caps, imgs = _captions_and_images(train_json)
    vcaps, vimgs = _captions_and_images(val_json)
    before = caption_retrieval(model, processor, tokenizer, vimgs, vcaps, max_len)
    pix = processor(images=[open_image(p) for p in imgs], return_tensors="pt")["pixel_values"]
    texts = _dialog_texts(train_json) if cfg.dialog_text else [[c] for c in caps]
    flat = [t for ts in texts for t in ts]
    first = np.cumsum([0] + [len(ts) for ts in texts])[:-1]
    all_ids, all_mask = clip_text_inputs(tokenizer, flat, max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n = len(caps)
    steps = epochs * max(1, -(-n // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    t0, losses = time.perf_counter(), []
    model.train()
    bar = tqdm(total=steps, desc="train_toy_clip", unit="step")
    for _ in range(epochs):
        order = rng.permutation(n)
        pick = torch.as_tensor(first + rng.integers(0, [len(ts) for ts in texts]))  # one text per image this epoch
        for b in range(0, n, batch_size):
            sel = torch.as_tensor(order[b:b + batch_size])
            tsel = pick[sel]
            out = model(input_ids=all_ids[tsel], attention_mask=all_mask[tsel], pixel_values=pix[sel],
                        return_loss=True)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sched.step()
            losses.append(out.loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    el = time.perf_counter() - t0
    after = caption_retrieval(model, processor, tokenizer, vimgs, vcaps, max_len)
    train_fit = caption_retrieval(model, processor, tokenizer, imgs[:len(vimgs)], caps[:len(vimgs)], max_len)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info("toy CLIP: val image->caption R@1 %.3f (untrained %.3f, chance %.3f); %d steps in %.1fs "
                "(%.0f pairs/s)", after["r@1"], before["r@1"], after["chance"], steps, el, steps * batch_size / el)
    return {"val_r@1": after["r@1"], "val_r@1_untrained": before["r@1"], "val_chance": after["chance"],
            "val_images": after["n"], "train_subset_r@1": train_fit["r@1"], "steps": steps,
            "final_loss": float(np.mean(losses[-5:])), "seconds": round(el, 1)}


def pretrain_toy_llm(llm_in: str, train_json: str, val_json: str, out_dir: str, cfg: ToyLLMConfig,
                     prompt_template: str = EmrConfig.prompt_template, seed: int = 0) -> dict:
    """Language-model pre-training of the tiny causal LM on train text  BOS [caption.] question: q answer: [a EOS]
    (the caption with probability cfg.context_prob), so that it knows the domain's words and reads a context where
    the bridge later puts its soft tokens. Without `cfg.with_answers` it never sees an answer: like a general
    pretrained LM, it has not learnt the VisDial answering task, which EMR fine-tuning teaches. Saved with
    save_pretrained."""
    epochs, batch_size, lr = cfg.epochs, cfg.batch_size, cfg.lr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(llm_in)
    tok = AutoTokenizer.from_pretrained(llm_in)
    codec = TextCodec(tok, prompt_template)

    rng = np.random.default_rng(seed)

    def sequences(path):
        s = load_visdial(path)
        return [codec.lead_ids() + (codec.context_ids(d["caption"]) if rng.random() < cfg.context_prob else [])
                + codec.prompt_ids(s.question(r)) + (codec.answer_ids(s.answer(r)) if cfg.with_answers else [])
                for d in s.dialogs for r in d["dialog"]]

    def batch(seqs):
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), tok.pad_token_id)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask, ids.masked_fill(mask == 0, -100)

    train, val = sequences(train_json), sequences(val_json)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=steps, desc="pretrain_toy_llm", unit="step")
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for b in range(0, len(train), batch_size):
            ids, mask, labels = batch([train[i] for i in order[b:b + batch_size]])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        vl = [float(model(*batch(val[i:i + 256])[:2], labels=batch(val[i:i + 256])[2]).loss)
              for i in range(0, len(val), 256)]
    el = time.perf_counter() - t0
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    logger.info("toy LM pre-trained: %d steps in %.1fs, val loss %.3f", steps, el, float(np.mean(vl)))
    return {"steps": steps, "val_loss": float(np.mean(vl)), "seconds": round(el, 1)}
