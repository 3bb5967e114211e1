"""The frozen causal LM behind the bridge: loading (4-bit via bitsandbytes when configured), sequence assembly
(soft prompt + text prompt + answer), the answer-only training loss, beam-search generation and option scoring.

A sequence is  [BOS] [Q soft tokens from llm_proj] "question: <q> answer:" [" <answer>" EOS]: the soft tokens sit
where a pretrained LM reads its context. The loss covers only the answer tokens and EOS; the prompt never contains
the answer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from mmemory.config import StrictConfig

logger = logging.getLogger(__name__)


@dataclass
class EmrConfig(StrictConfig):
    """config emr (its scalar keys; encoder, toy_clip, toy_llm, extract, bridge, train and eval are their own
    sections). Defaults: config.yaml's; activate, variants and threads are read by the workflow (rules/emr.smk)."""

    SECTION = "emr"

    activate: bool = True  # run the emr stages
    variants: list[str] = field(default_factory=lambda: ["before", "after"])  # rows; + no_turn_pe, no_memory_bank
    device: str = "cpu"  # torch device for extraction, training and evaluation (cuda at paper scale)
    threads: int = 1  # CPU threads per train/eval job
    llm_4bit: bool = False  # load the LM in 4-bit NF4 through bitsandbytes (paper: true)
    llm_dtype: str = "float32"  # auto | float32 | float16 | bfloat16 (auto: bfloat16 from compute capability 8.0)
    llm_trainable: bool = True  # toy only: fine-tune the tiny LM with the bridge (paper: false, the LM stays frozen)
    prompt_template: str = "question: {question} answer:"  # text after the soft tokens; never contains the answer


def load_llm(path: str, load_in_4bit: bool = EmrConfig.llm_4bit, device: str = EmrConfig.device,
             dtype: str = EmrConfig.llm_dtype):
    """A frozen causal LM and its tokenizer, loaded by path. 4-bit NF4 through `BitsAndBytesConfig` when asked.
    `dtype` "auto": bfloat16 on a GPU of compute capability >= 8.0, float16 on an older one, float32 on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmemory.precision import resolve_dtype

    dtype = resolve_dtype(dtype, device, what="emr.llm_dtype")
    torch_dtype = getattr(torch, dtype)
    kwargs = {"dtype": torch_dtype}
    if load_in_4bit:
        try:
            from transformers import BitsAndBytesConfig

            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise ImportError(f"emr.llm_4bit needs bitsandbytes ({e}); it is in envs/malmm.yaml") from e
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"cannot load the causal LM from {path!r} ({e}); set config models.llm to a local "
                                f"checkpoint directory (paper: meta-llama/Llama-3.2-1B, downloaded)") from e
    if not load_in_4bit:
        model = model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("LM %s loaded (%s, %.1fM params, frozen)", path, "4-bit NF4" if load_in_4bit else dtype,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer


@dataclass
class TextCodec:
    """Tokenises prompts and answers once, with BOS before the prompt and EOS after the answer."""

    tokenizer: object
    prompt_template: str = EmrConfig.prompt_template

    def lead_ids(self) -> list[int]:
        """Tokens before the soft prompt (BOS when the tokenizer has one)."""
        bos = self.tokenizer.bos_token_id
        return [bos] if bos is not None else []

    def prompt_ids(self, question: str) -> list[int]:
        return list(self.tokenizer(self.prompt_template.format(question=question), add_special_tokens=False)
                    ["input_ids"])

    def context_ids(self, text: str) -> list[int]:
        """Plain-text context (toy LM pre-training reads captions where the bridge later puts its soft tokens)."""
        return list(self.tokenizer(text.strip() + ".", add_special_tokens=False)["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        ids = self.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        return list(ids) + [self.tokenizer.eos_token_id]

    def decode(self, ids) -> str:
        return " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).split())


def assemble(llm, soft: torch.Tensor, prompts: list[list[int]], answers: list[list[int]] | None, pad_id: int,
             left_pad: bool, lead: list[int] = ()) -> dict:
    """Build inputs_embeds / attention_mask / position_ids (/ labels) for N sequences  lead + soft + prompt + answer.

    soft [N, Q, E] soft prompt; lead, prompts and answers are token-id lists. Labels are -100 except on answers.
    """
    N, Q, E = soft.shape
    lead = list(lead)
    answers = answers if answers is not None else [[] for _ in prompts]
    lens = [len(lead) + Q + len(p) + len(a) for p, a in zip(prompts, answers)]
    T = max(lens)
    ids = torch.full((N, T), pad_id, dtype=torch.long)
    labels = torch.full((N, T), -100, dtype=torch.long)
    mask = torch.zeros((N, T), dtype=torch.long)
    soft_pos = torch.zeros((N, Q), dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        start = T - lens[i] if left_pad else 0
        if lead:
            ids[i, start:start + len(lead)] = torch.tensor(lead, dtype=torch.long)
        s0 = start + len(lead)  # first soft position
        soft_pos[i] = torch.arange(s0, s0 + Q)
        text = p + a
        ids[i, s0 + Q:s0 + Q + len(text)] = torch.tensor(text, dtype=torch.long)
        if a:
            labels[i, s0 + Q + len(p):s0 + Q + len(text)] = torch.tensor(a, dtype=torch.long)
        mask[i, start:start + lens[i]] = 1
    device = soft.device
    emb = llm.get_input_embeddings()(ids.to(device)).clone()
    rows = torch.arange(N, device=device)[:, None]
    emb[rows, soft_pos.to(device)] = soft.to(emb.dtype)  # the bridge runs in fp32; the LM may run in fp16
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"inputs_embeds": emb, "attention_mask": mask.to(device), "position_ids": position_ids.to(device),
            "labels": labels.to(device)}


def answer_loss(llm, soft, prompts, answers, pad_id, lead=()) -> torch.Tensor:
    """Mean token cross-entropy on the answer tokens (+ EOS)."""
    batch = assemble(llm, soft, prompts, answers, pad_id, left_pad=False, lead=lead)
    hidden = llm.get_decoder()(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                               position_ids=batch["position_ids"]).last_hidden_state
    target = batch["labels"][:, 1:]
    keep = target != -100  # the LM head runs only where a next token is scored (the answer), not on every position
    logits = llm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


@torch.no_grad()
def option_log_likelihood(llm, soft, prompts, options: list[list[int]], pad_id, length_normalize=False, lead=()):
    """Sum (or mean) log p(option tokens + EOS | soft prompt, prompt) for N (soft, prompt, option) triples -> [N].
    Left padding puts every option at the end, so only the last positions' logits are computed."""
    batch = assemble(llm, soft, prompts, options, pad_id, left_pad=True, lead=lead)
    k = max(len(o) for o in options) + 1
    logits = llm(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"], logits_to_keep=k).logits.float()
    labels = batch["labels"][:, -k:]
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    tgt = labels[:, 1:]
    valid = tgt != -100
    tok = logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * valid
    total = tok.sum(-1)
    return total / valid.sum(-1).clamp(min=1) if length_normalize else total


@torch.no_grad()
def generate_answers(llm, codec: TextCodec, soft, prompts, num_beams=5, max_new_tokens=30) -> list[str]:
    """Beam-search answers for N (soft prompt, prompt) pairs."""
    tok = codec.tokenizer
    batch = assemble(llm, soft, prompts, None, tok.pad_token_id, left_pad=True, lead=codec.lead_ids())
    out = llm.generate(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                       num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return [codec.decode(row) for row in out]
