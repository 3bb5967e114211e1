"""`eval_coref`: the coref stage's two protocols on one test set, a position-bias pass, and the no-model baselines.

- **Generation, as seed 002 did.** Greedy-decode an answer after `format_prompt(d)` (cut at EOS and at `stop`, a
  blank line by default), parse it with `parse_answer`: object-level accuracy (the picked label is the answer),
  photo-level accuracy (the picked choice's `photo_id` is the answer's), exact match (`parsed.exact` and right) and
  the parse-failure rate. An unparseable answer counts as wrong in every accuracy; it is never dropped.
- **Option likelihood, as lm-evaluation-harness scores multiple choice.** Each option's continuation
  (`format_option(c, answer_format, d)`: " D) the mug in B's photo", " the mug in B's photo" in the `text` format,
  or " that red one = red mug -> the mug in B's photo" in the toy's `evidence` format: the format the model was
  trained to answer in) is scored given the prompt: the context and context+continuation
  are tokenised, and the continuation's tokens are those after the context's (a trailing space of the context moves
  into the continuation first), as lm-eval's `_encode_pair` does. `acc` picks the largest summed log-likelihood,
  `acc_norm` the largest log-likelihood per character of the option (lm-eval divides by `len(choice)`, the choice's
  characters without the target delimiter: here the option without its leading space). It cannot fail to parse.
- **Position bias.** The same dialogues with their options rotated by `permute_shift` (`permute_choices`): accuracy
  again under both protocols, and the share of items whose chosen OPTION (the chosen choice's text, not its label)
  changes. A parse failure is its own "no option" value: failing on both orders is no change.
- **Intervals.** Every accuracy is `{value, lo, hi, k, n}`: a 95% Wilson score interval (`ci`) over the n items.

    from mmemory.coref.evaluate import CorefEvalConfig, evaluate_coref
    evaluate_coref("path/to/model", "test.json", "eval.json",
                   CorefEvalConfig())
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Sequence

import torch
from tqdm import tqdm

from mmemory.config import ConfigError, StrictConfig, check_types
from mmemory.coref.answers import parse_answer
from mmemory.coref.data import Dialogue, load_coref, validate_dialogues
from mmemory.coref.prompts import ANSWER_FORMATS, answer_part, format_option, format_prompt, permute_choices
from mmemory.coref.toy import most_recent_mention
from mmemory.io import atomic_write_json

logger = logging.getLogger(__name__)

CI_METHODS = ("wilson",)


@dataclass
class CorefEvalConfig(StrictConfig):
    """Evaluation settings: config coref.eval (defaults: the embedded default's)."""

    SECTION = "coref.eval"

    max_new_tokens: int = 24  # greedy tokens per generated answer (a toy target, " D) the mug in B's photo", is ~10)
    batch_size: int = 32  # prompts per forward pass (likelihood: with their 4 options each; generation)
    permute_shift: int = 1  # position-bias pass: every dialogue's options rotated by this many labels
    stop: str = "\n\n"  # a generated answer is cut at the first occurrence of this string (and at EOS)
    ci: str = "wilson"  # interval of every accuracy: the Wilson score interval (the only method)
    ci_level: float = 0.95  # coverage of the intervals
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda | cuda:N
    dtype: str = "auto"  # on CUDA: auto (bfloat16 from compute capability 8.0, else float16) or a name; CPU: float32
    load_in_4bit: bool = False  # NF4 weights through bitsandbytes: an 8B then needs ~6 GB instead of ~16 GB (CUDA)
    limit: int | None = None  # evaluate the first N test dialogues only (None: all)
    answer_format: str = "evidence"  # as trained: evidence " that one = A: love the mug -> ..." (toy) | text | option
    # the untuned models' format (None: answer_format). The toy's `text`: an untuned model never learnt the evidence,
    # and evidence options differ in form (a quote of the dialogue or a bare noun), which its likelihood reads
    untuned_answer_format: str | None = "text"

    def __post_init__(self):
        check_types(self)
        if self.answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"config {self.SECTION}: answer_format {self.answer_format!r} is not one of "
                              f"{ANSWER_FORMATS}; use the format of coref.train.target (label: option)")
        if self.untuned_answer_format not in (None, *ANSWER_FORMATS):
            raise ConfigError(f"config {self.SECTION}: untuned_answer_format {self.untuned_answer_format!r} is not "
                              f"one of {ANSWER_FORMATS} or null (the same as answer_format)")
        if self.ci not in CI_METHODS:
            raise ConfigError(f"config {self.SECTION}: ci {self.ci!r} is not one of {CI_METHODS}")
        if not 0 < self.ci_level < 1:
            raise ConfigError(f"config {self.SECTION}: ci_level {self.ci_level!r} must lie strictly between 0 and 1")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError(f"config {self.SECTION}: batch_size and max_new_tokens must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"config {self.SECTION}: limit {self.limit!r} must be a positive count or null (all)")


# ---------------------------------------------------------------- intervals

def ci(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n` at `level` (95%: 8 of 10 -> (0.490, 0.943)).
    n = 0 gives (0, 1): no items, no information."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: float, n: int, level: float = 0.95) -> dict:
    """An accuracy with its interval: {value, lo, hi, k, n} (value None when n is 0)."""
    lo, hi = ci(k, n, level)
    return {"value": k / n if n else None, "lo": lo, "hi": hi, "k": k, "n": n}


# ---------------------------------------------------------------- option likelihood

def _encode_pair(tokenizer, context: str, continuation: str, context_ids: list[int] | None = None):
    """(context ids, continuation ids) as lm-eval's `_encode_pair`: a trailing space of the context moves into the
    continuation, context and context+continuation are tokenised (with the tokenizer's special tokens, e.g. BOS), and
    the continuation is the whole's tokens after the context's. When the whole does not start with the context's
    tokens (a tokenizer that merges across the boundary or appends EOS), the continuation is tokenised on its own."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    ctx = context_ids if context_ids is not None and not n_spaces else tokenizer(context).input_ids
    whole = tokenizer(context + continuation).input_ids
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx):]
    return ctx, tokenizer(continuation, add_special_tokens=False).input_ids


def _pad_id(tokenizer, model) -> int:
    for v in (tokenizer.pad_token_id, getattr(model.config, "pad_token_id", None), tokenizer.eos_token_id):
        if isinstance(v, int):
            return v
    return 0


def _max_positions(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def _left_pad(seqs: Sequence[list[int]], pad: int):
    """(ids, attention mask, position ids) of left-padded sequences; positions count real tokens only."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, x in enumerate(seqs):
        if x:
            ids[r, width - len(x):] = torch.tensor(x)
            mask[r, width - len(x):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _logits(model, **kw):
    try:
        return model(**kw)
    except TypeError:  # a model without logits_to_keep
        kw.pop("logits_to_keep", None)
        return model(**kw)


def _encode_requests(tokenizer, model, requests, names):
    limit = _max_positions(model)
    ctx_cache: dict[str, list[int]] = {}
    encoded = []
    for i, (context, continuation) in enumerate(requests):
        if context not in ctx_cache:
            ctx_cache[context] = tokenizer(context).input_ids
        ctx, cont = _encode_pair(tokenizer, context, continuation, ctx_cache[context])
        name = names[i] if names else f"request {i}"
        if not cont:
            raise ValueError(f"{name}: the continuation {continuation!r} has no tokens; give each option a text")
        if not ctx:
            raise ValueError(f"{name}: the context {context!r} has no tokens (and the tokenizer adds no BOS); "
                             "give the prompt a text")
        if limit is not None and len(ctx) + len(cont) - 1 > limit:
            raise ValueError(f"{name}: {len(ctx) + len(cont) - 1} tokens exceed the model's {limit} positions; "
                             "shorten the dialogue or use a model with a longer context")
        encoded.append((tuple(ctx), cont))
    return encoded


@torch.no_grad()
def score_continuations(model, tokenizer, requests: Sequence[tuple[str, str]], batch_size: int = 32,
                        names: Sequence[str] | None = None, progress: tqdm | None = None,
                        share_context: bool = True) -> list[float]:
    """Summed log p(continuation | context) for each (context, continuation), in the order given.

    Requests with the same context share one forward pass over it: the context but its last token is run once
    (left-padded, `batch_size` contexts at a time, position ids from the attention mask), its KV cache is copied to
    each of its continuations, and the continuations (the context's last token, then all but their last token) are
    run on it; the result equals a plain forward pass over context + continuation. `share_context=False` runs the
    plain pass (left-padded whole sequences), the reference. `names` label the requests in errors."""
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer, model)
    encoded = _encode_requests(tokenizer, model, requests, names)
    out = [0.0] * len(encoded)
    groups: dict[tuple, list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        groups.setdefault(ctx, []).append(i)
    contexts = sorted(groups, key=len, reverse=True)
    if not share_context or any(len(c) < 2 for c in contexts):
        order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            conts = [encoded[i][1] for i in idx]
            k = max(len(c) for c in conts)
            ids, mask, pos = _left_pad([list(encoded[i][0]) + encoded[i][1][:-1] for i in idx], pad)
            logits = _logits(model, input_ids=ids.to(device), attention_mask=mask.to(device),
                             position_ids=pos.to(device), logits_to_keep=k).logits
            logp = torch.log_softmax(logits[:, -k:].float(), dim=-1)
            for r, (i, c) in enumerate(zip(idx, conts)):
                out[i] = float(logp[r, k - len(c):].gather(-1, torch.tensor(c, device=logp.device)[:, None]).sum())
            if progress is not None:
                progress.update(len(idx))
        return out
    for b in range(0, len(contexts), batch_size):
        ctxs = contexts[b:b + batch_size]
        ids, mask, pos = _left_pad([list(c[:-1]) for c in ctxs], pad)
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        cache = _logits(model, input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                        logits_to_keep=1).past_key_values
        rows = [(g, i) for g, c in enumerate(ctxs) for i in groups[c]]
        cache.batch_select_indices(torch.tensor([g for g, _ in rows], device=device))
        conts = [encoded[i][1] for _, i in rows]
        width = max(len(c) for c in conts)
        opt = torch.full((len(rows), width), pad, dtype=torch.long)
        opt_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ((g, _), c) in enumerate(zip(rows, conts)):
            opt[r, :len(c)] = torch.tensor([ctxs[g][-1]] + c[:-1])
            opt_mask[r, :len(c)] = 1
        sel = torch.tensor([g for g, _ in rows])
        full_mask = torch.cat([mask.cpu()[sel], opt_mask], dim=1)
        opt_pos = torch.tensor([len(ctxs[g]) - 1 for g, _ in rows])[:, None] + torch.arange(width)[None]
        logits = model(input_ids=opt.to(device), attention_mask=full_mask.to(device),
                       position_ids=opt_pos.to(device), past_key_values=cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        for r, ((_, i), c) in enumerate(zip(rows, conts)):
            out[i] = float(logp[r, :len(c)].gather(-1, torch.tensor(c, device=logp.device)[:, None]).sum())
        if progress is not None:
            progress.update(len(rows))
    return out


def option_chars(option: str) -> int:
    """The length lm-eval's acc_norm divides by: the option's characters without the leading delimiter."""
    return max(1, len(option.lstrip()))


def option_loglikelihoods(model, tokenizer, prompt: str, options: Sequence[str],
                          batch_size: int = 32) -> list[tuple[float, int]]:
    """(summed log-likelihood, characters) of each option's continuation given `prompt`, as lm-eval scores one
    multiple-choice item."""
    lls = score_continuations(model, tokenizer, [(prompt, o) for o in options], batch_size)
    return [(ll, option_chars(o)) for ll, o in zip(lls, options)]


def pick_options(scored: Sequence[tuple[float, int]]) -> tuple[int, int]:
    """(acc's pick, acc_norm's pick): the index of the largest summed log-likelihood, and of the largest
    log-likelihood per character (the first on ties, as numpy's argmax)."""
    acc = max(range(len(scored)), key=lambda i: (scored[i][0], -i))
    norm = max(range(len(scored)), key=lambda i: (scored[i][0] / scored[i][1], -i))
    return acc, norm


# ---------------------------------------------------------------- generation

def cut_answer(text: str, stop: str) -> str:
    """A generated answer up to the first `stop` (the whole text when it has none)."""
    if stop and stop in text:
        return text[:text.index(stop)]
    return text


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 24, batch_size: int = 32,
                     stop: str = "\n\n", progress: tqdm | None = None) -> list[str]:
    """Greedy answers to `prompts` (left-padded batches, sorted by length), cut at EOS and at `stop`."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos,
                           pad_token_id=_pad_id(tokenizer, model))
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            seqs = model.generate(**enc, generation_config=gen)
            new = seqs[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                out[i] = cut_answer(tokenizer.decode(row, skip_special_tokens=True), stop)
            if progress is not None:
                progress.update(len(idx))
    finally:
        tokenizer.padding_side = side
    return out


# ---------------------------------------------------------------- metrics

def _choice(d: Dialogue, label: str | None):
    return next((c for c in d.choices if c.label == label), None)


def _photo_right(d: Dialogue, label: str | None) -> bool:
    c = _choice(d, label)
    return c is not None and c.photo_id == d.answer_choice.photo_id


def label_accuracy(dialogues: Sequence[Dialogue], labels: Sequence[str | None], level: float = 0.95) -> dict:
    """Object-level and photo-level accuracy of one chosen label per dialogue (None: no choice, wrong)."""
    n = len(dialogues)
    obj = sum(lab == d.answer for d, lab in zip(dialogues, labels))
    photo = sum(_photo_right(d, lab) for d, lab in zip(dialogues, labels))
    return {"object_acc": rate(obj, n, level), "photo_acc": rate(photo, n, level)}


def generation_metrics(dialogues: Sequence[Dialogue], answers: Sequence[str], level: float = 0.95) -> tuple[dict,
                                                                                                           list]:
    """(metrics, parsed answers): object and photo accuracy, exact match and the parse-failure rate, over all
    dialogues (an unparseable answer is wrong, never dropped)."""
    parsed = [parse_answer(a, d.choices) for d, a in zip(dialogues, answers)]
    n = len(dialogues)
    metrics = label_accuracy(dialogues, [p.label for p in parsed], level)
    metrics["exact_match"] = rate(sum(p.exact and p.label == d.answer for d, p in zip(dialogues, parsed)), n, level)
    metrics["parse_failure"] = rate(sum(p.failed for p in parsed), n, level)
    metrics["parse_failure_by_how"] = dict(Counter(p.how for p in parsed if p.failed))
    return metrics, parsed


def likelihood_metrics(dialogues: Sequence[Dialogue], picks: Sequence[tuple[int, int]], level: float = 0.95) -> dict:
    """acc and acc_norm (object level) and acc's photo-level accuracy, from `pick_options` per dialogue."""
    acc_labels = [d.choices[a].label for d, (a, _) in zip(dialogues, picks)]
    norm_labels = [d.choices[m].label for d, (_, m) in zip(dialogues, picks)]
    acc = label_accuracy(dialogues, acc_labels, level)
    norm = label_accuracy(dialogues, norm_labels, level)
    return {"acc": acc["object_acc"], "acc_norm": norm["object_acc"], "photo_acc": acc["photo_acc"],
            "photo_acc_norm": norm["photo_acc"]}


def changed_share(original: Sequence[Dialogue], original_labels: Sequence[str | None],
                  permuted: Sequence[Dialogue], permuted_labels: Sequence[str | None], level: float = 0.95) -> dict:
    """The share of items whose chosen option (its text, not its label) differs between the two orders. No choice
    (a parse failure) is one more value: failing on both orders is no change, failing on one is a change."""
    def text(d, lab):
        c = _choice(d, lab)
        return None if c is None else c.text
    changed = sum(text(a, la) != text(b, lb) for a, la, b, lb in zip(original, original_labels, permuted,
                                                                        permuted_labels))
    return rate(changed, len(original), level)


# ---------------------------------------------------------------- the evaluation

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(model_path: str | Path, device: str = "auto", dtype: str = "auto", load_in_4bit: bool = False):
    """(model, tokenizer) by path with the Auto classes: a tiny local Llama or a real checkpoint alike. On CUDA the
    weights are in `dtype` (auto: bfloat16 from compute capability 8.0, float16 below; an 8B needs ~16 GB either way)
    or 4-bit NF4 (`load_in_4bit`); on the CPU float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmemory.hub import check_model
    from mmemory.precision import resolve_dtype

    check_model(model_path, "coref model")  # a missing path or an uncached hub id offline: one clear error
    dev = _device(device)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:  # Llama-3 has none: padding positions are masked, any id will do
        tokenizer.pad_token = tokenizer.eos_token
    name = resolve_dtype(dtype, dev, cpu="float32", what="coref.eval.dtype")
    kwargs = {"dtype": getattr(torch, name)}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, name))
        kwargs["device_map"] = {"": str(dev)}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if not load_in_4bit:
        model = model.to(dev)
    model.eval()
    return model, tokenizer


def _score_items(model, tokenizer, dialogues: Sequence[Dialogue], batch_size: int, bar: tqdm,
                 answer_format: str = "option"):
    """Per dialogue: ([(loglik, chars)] per option, (acc pick, acc_norm pick))."""
    requests, names = [], []
    for d in dialogues:
        prompt = format_prompt(d)
        for c in d.choices:
            requests.append((prompt, format_option(c, answer_format, d)))
            names.append(f"dialogue {d.dialog_id!r} option {c.label}")
    lls = score_continuations(model, tokenizer, requests, batch_size, names, progress=bar)
    out, i = [], 0
    for d in dialogues:
        scored = [(lls[i + j], option_chars(format_option(c, answer_format, d))) for j, c in enumerate(d.choices)]
        i += len(d.choices)
        out.append((scored, pick_options(scored)))
    return out


def evaluate_dialogues(model, tokenizer, dialogues: Sequence[Dialogue], cfg: CorefEvalConfig) -> dict:
    """Both protocols on `dialogues` and on their permuted copies: the metrics and per-item predictions."""
    model.eval()
    level = cfg.ci_level
    permuted = [permute_choices(d, cfg.permute_shift) for d in dialogues]
    seconds = {}
    n = len(dialogues)
    with torch.no_grad():
        t = time.perf_counter()
        with tqdm(total=2 * sum(len(d.choices) for d in dialogues), desc="eval_coref likelihood",
                  unit="option") as bar:
            lik = _score_items(model, tokenizer, dialogues, cfg.batch_size, bar, cfg.answer_format)
            lik_p = _score_items(model, tokenizer, permuted, cfg.batch_size, bar, cfg.answer_format)
        seconds["likelihood"] = time.perf_counter() - t
        t = time.perf_counter()
        with tqdm(total=2 * n, desc="eval_coref generation", unit="prompt") as bar:
            answers = generate_answers(model, tokenizer, [format_prompt(d) for d in dialogues + permuted],
                                       cfg.max_new_tokens, cfg.batch_size, cfg.stop, progress=bar)
        seconds["generation"] = time.perf_counter() - t
    gen_a, gen_p = answers[:n], answers[n:]
    gen, parsed = generation_metrics(dialogues, [answer_part(a, cfg.answer_format) for a in gen_a], level)
    gen_perm, parsed_p = generation_metrics(permuted, [answer_part(a, cfg.answer_format) for a in gen_p], level)
    picks, picks_p = [p for _, p in lik], [p for _, p in lik_p]
    likm = likelihood_metrics(dialogues, picks, level)
    likm_p = likelihood_metrics(permuted, picks_p, level)

    def labels(ds, ps, which):
        return [d.choices[p[which]].label for d, p in zip(ds, ps)]

    changed = {
        "generation": changed_share(dialogues, [p.label for p in parsed], permuted, [p.label for p in parsed_p],
                                    level),
        "acc": changed_share(dialogues, labels(dialogues, picks, 0), permuted, labels(permuted, picks_p, 0), level),
        "acc_norm": changed_share(dialogues, labels(dialogues, picks, 1), permuted, labels(permuted, picks_p, 1),
                                  level),
    }
    predictions = []
    for d, dp, a, ap, p, pp, (sc, pk), (scp, pkp) in zip(dialogues, permuted, gen_a, gen_p, parsed, parsed_p, lik,
                                                          lik_p):
        predictions.append({
            "dialog_id": d.dialog_id, "answer": d.answer, "generated": a, "parsed_label": p.label, "how": p.how,
            "exact": p.exact, "option_logliks": [round(s, 5) for s, _ in sc], "option_chars": [c for _, c in sc],
            "lik_label": d.choices[pk[0]].label, "lik_norm_label": d.choices[pk[1]].label,
            "permuted": {"answer": dp.answer, "generated": ap, "parsed_label": pp.label, "how": pp.how,
                         "exact": pp.exact, "option_logliks": [round(s, 5) for s, _ in scp],
                         "lik_label": dp.choices[pkp[0]].label, "lik_norm_label": dp.choices[pkp[1]].label},
        })
    return {"n": n, "generation": gen, "likelihood": likm,
            "permuted": {"shift": cfg.permute_shift, "generation": gen_perm, "likelihood": likm_p,
                         "changed": changed},
            "seconds": {k: round(v, 2) for k, v in seconds.items()}, "predictions": predictions}


def evaluate_coref(model_path: str | Path, test_json: str | Path, out_json: str | Path,
                   cfg: CorefEvalConfig | None = None) -> dict:
    """Load the model by path, run both protocols and the permuted pass on `test_json` (schema, strict), write
    `out_json` atomically (metrics and per-item predictions) and return it."""
    cfg = cfg or CorefEvalConfig()
    t0 = time.perf_counter()
    dialogues, _ = load_coref(test_json, strict=True)
    if cfg.limit is not None:
        dialogues = dialogues[:cfg.limit]
    if not dialogues:
        raise ValueError(f"{test_json}: no test dialogues to evaluate; check the split (coref test share)")
    model, tokenizer = load_model(model_path, cfg.device, cfg.dtype, cfg.load_in_4bit)
    loaded = time.perf_counter() - t0
    result = evaluate_dialogues(model, tokenizer, dialogues, cfg)
    result["seconds"]["load"] = round(loaded, 2)
    result["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    out = {"model": str(model_path), "test_json": str(test_json), "device": str(next(model.parameters()).device),
           "ci": f"{cfg.ci} {cfg.ci_level:.0%}", "settings": asdict(cfg), **result}
    atomic_write_json(out_json, out, indent=1)
    g, lk = out["generation"], out["likelihood"]
    logger.info("eval_coref %s: object %.3f photo %.3f exact %.3f parse failures %.3f | acc %.3f acc_norm %.3f | "
                "%d dialogues in %.1f s (%.1f dialogues/s, both protocols, both orders)", model_path,
                g["object_acc"]["value"], g["photo_acc"]["value"], g["exact_match"]["value"],
                g["parse_failure"]["value"], lk["acc"]["value"], lk["acc_norm"]["value"], out["n"],
                out["seconds"]["total"], out["n"] / max(out["seconds"]["total"], 1e-9))
    return out


# ---------------------------------------------------------------- baselines (no model)

def _dialogues(items) -> list[Dialogue]:
    items = list(items)
    if all(isinstance(d, Dialogue) for d in items):
        return items
    return validate_dialogues([d.to_dict() if isinstance(d, Dialogue) else d for d in items], strict=True,
                              source="coref baselines")[0]


def expected_random(dialogues: Sequence[Dialogue]) -> dict:
    """The exact expected accuracy of a uniform random label: 1/4 object level; photo level, the mean share of
    each dialogue's choices that lie in the answer's photo."""
    n = len(dialogues)
    obj = sum(1 / len(d.choices) for d in dialogues) / n
    photo = sum(sum(c.photo_id == d.answer_choice.photo_id for c in d.choices) / len(d.choices)
                for d in dialogues) / n
    return {"object_acc": obj, "photo_acc": photo}


def exact_rate(value: float, n: int) -> dict:
    """A known accuracy (no sampling): a rate whose interval is the value itself."""
    return {"value": value, "lo": value, "hi": value, "k": value * n, "n": n}


def _labels_row(name: str, kind: str, test: Sequence[Dialogue], labels: Sequence[str | None], level: float,
                note: str, **extra) -> dict:
    return {"baseline": name, "kind": kind, **label_accuracy(test, labels, level), "labels": list(labels),
            "note": note, **extra}


def baseline_rows(train, test, level: float = 0.95, val=None, oracle: bool = False) -> list[dict]:
    """The no-model baselines on `test`: each {baseline, kind, object_acc, photo_acc (rates with intervals), labels
    (the label picked per test dialogue; None for the expected random label), note}. `kind` is `chance`,
    `shortcut` (surface cues: what a model could score without resolving the pronoun) or `oracle` (a ceiling, never
    a baseline to beat).

    - random label: its exact expected accuracy (`expected_random`: 1/4 object level), an interval of width 0;
    - the best single letter on test: the share of the answer letter most common in the test split itself, the
      ceiling of every constant-letter prior there (the toy balances letters over all dialogues, so a letter
      chosen on train carries no information, so the train split's most frequent letter is no baseline);
    - the most recently mentioned object (`most_recent_mention`; none named: no choice, wrong), the first-mentioned
      and the most-mentioned object (`mmemory.coref.baselines`);
    - a logistic regression on shallow per-choice features (`fit_shortcut_lr`), fitted on `train`, C chosen on
      `val` (left out when no val split is given);
    - `oracle`: the toy's rule reader (`resolve_by_rule`), which applies the task's definition (1.0 on toy data)."""
    from mmemory.coref.baselines import best_letter, first_mentioned, fit_shortcut_lr, most_mentioned
    from mmemory.coref.toy import resolve_by_rule

    train, test = _dialogues(train), _dialogues(test)
    exp = expected_random(test)
    n = len(test)
    letter, k_letter = best_letter(test)
    recency = [most_recent_mention(d) for d in test]
    rows = [
        {"baseline": "random label", "kind": "chance", "object_acc": exact_rate(exp["object_acc"], n),
         "photo_acc": exact_rate(exp["photo_acc"], n), "expected": exp, "labels": None,
         "note": f"expected value of a uniform draw: {exp['object_acc']:.3f} object, {exp['photo_acc']:.3f} photo"},
        _labels_row("best single letter on test", "chance", test, [letter] * n, level,
                    f"always {letter}, the most common test answer ({k_letter} of {n}): the ceiling of any "
                    f"constant-letter prior"),
        _labels_row("most recently mentioned object", "shortcut", test, recency, level,
                    f"no object named before the last utterance in {sum(r is None for r in recency)} dialogues"),
        _labels_row("first-mentioned object", "shortcut", test, [first_mentioned(d) for d in test], level,
                    "the object named first before the final utterance"),
        _labels_row("most-mentioned object", "shortcut", test, [most_mentioned(d) for d in test], level,
                    "the object named most often before the final utterance (ties: named first)"),
    ]
    if val is not None:
        val = _dialogues(val)
        lr = fit_shortcut_lr(train, val)
        rows.append(_labels_row(
            "shortcut logistic regression", "shortcut", test, lr.predict(test), level,
            f"scikit-learn LogisticRegression on shallow per-choice features, fitted on {len(train)} train "
            f"dialogues, C={lr.C:g} chosen on {len(val)} val dialogues (val object acc "
            f"{lr.val_accuracy[lr.C]:.3f})", chosen_on_val={"C": lr.C, "val_object_acc": lr.val_accuracy},
            coefficients=lr.coefficients()))
    if oracle:
        rows.append(_labels_row("rule reader (oracle)", "oracle", test, [resolve_by_rule(d) for d in test], level,
                                "applies the toy task's definition to the text: a ceiling, not a baseline"))
    return rows
