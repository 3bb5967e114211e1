"""The EMR bridge: encoder embeddings -> imagebind_fc + turn_pe -> memory bank -> Q-Former -> llm_proj -> frozen LM.

Per dialogue round t (1-based), the frame feature is

    frame_t = ln_vision(imagebind_fc([image_emb ; question_emb_t]) + turn_pe(t))       # [H]

`imagebind_fc = Linear(2*D, H)` and `turn_pe = Embedding(11, H)` as in the seeds (index 0 is reserved; rounds use
1..10). Frames enter an MA-LMM memory bank (mmemory.emr.memory_bank); the transformers `Blip2QFormerModel`
(`encoder_hidden_size = H`) lets its learned query tokens cross-attend to the bank, and `llm_proj` maps the query
outputs into the causal LM's embedding space, where they precede the text prompt.

Which parameters train is set by config (`trainable`: glob patterns over parameter names, e.g. `imagebind_fc`,
`turn_pe`, `qformer`, `qformer.*crossattention*`). Every parameter is recorded as loaded (from a Q-Former
checkpoint) or freshly initialised; freezing a freshly initialised parameter is an error unless
`allow_frozen_init` is set, and then it is a loud warning (the seeds froze a re-initialised cross-attention).
"""
from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmemory.config import StrictConfig
from mmemory.emr.memory_bank import MemoryBank

logger = logging.getLogger(__name__)

BRIDGE_PARTS = ("imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj")


@dataclass
class BridgeConfig(StrictConfig):
    """Sizes and switches of the bridge: config emr.bridge (defaults: config.yaml's toy sizes; the seeds' and
    BLIP-2's values in comments, and in config/paper.yaml)."""

    SECTION = "emr.bridge"

    embed_dim: int = 64  # D: encoder embedding width (toy CLIP: 64; ImageBind-Huge: 1024)
    hidden_size: int = 64  # H: imagebind_fc output = Q-Former encoder_hidden_size (seeds: 1024)
    num_turns: int = 11  # turn_pe rows (seeds: Embedding(11, H)); rounds 1..10, 0 reserved
    num_query_tokens: int = 8  # learned Q-Former query tokens (BLIP-2 / MA-LMM: 32)
    qformer_hidden_size: int = 64  # Q-Former width (BLIP-2: 768)
    qformer_layers: int = 1  # Q-Former layers (BLIP-2: 12)
    qformer_heads: int = 4  # Q-Former attention heads (BLIP-2: 12)
    qformer_intermediate_size: int = 128  # Q-Former MLP width (BLIP-2: 3072)
    cross_attention_frequency: int = 1  # a cross-attention block every this many layers (BLIP-2: 2)
    qformer_initializer_range: float = 0.1  # std of the Q-Former's fresh weights (BERT/BLIP-2: 0.02)
    qformer_checkpoint: str | None = None  # a BLIP-2 checkpoint directory to load qformer.* and query_tokens from
    memory_bank_length: int = 4  # MA-LMM memory bank length, in turns (paper preset: 10)
    use_memory_bank: bool = True  # false: the Q-Former sees only the current turn (ablation)
    use_turn_pe: bool = True  # false: no turn position embedding (ablation)
    embed_scale: float | None = None  # multiply encoder embeddings by this (None: sqrt(embed_dim), which gives
    #                                   unit-norm embeddings entries of unit scale, the range nn.Linear's init expects)
    dropout: float = 0.0  # Q-Former dropout (hidden and attention)
    allow_frozen_init: bool = False  # true: freezing freshly initialised weights is only a warning
    trainable: list[str] = field(default_factory=lambda: [  # the seeds trained only imagebind_fc and turn_pe
        "imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj"])


def _matches(name: str, patterns: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns)


class EMRBridge(nn.Module):
    """imagebind_fc + turn_pe + memory bank + Q-Former + llm_proj. `llm_hidden` is the LM's embedding width."""

    def __init__(self, cfg: BridgeConfig, llm_hidden: int):
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        self.cfg = cfg
        self.imagebind_fc = nn.Linear(2 * cfg.embed_dim, cfg.hidden_size)
        self.ln_vision = nn.LayerNorm(cfg.hidden_size)
        self.turn_pe = nn.Embedding(cfg.num_turns, cfg.hidden_size)
        qcfg = Blip2QFormerConfig(
            hidden_size=cfg.qformer_hidden_size, num_hidden_layers=cfg.qformer_layers,
            num_attention_heads=cfg.qformer_heads, intermediate_size=cfg.qformer_intermediate_size,
            encoder_hidden_size=cfg.hidden_size, cross_attention_frequency=cfg.cross_attention_frequency,
            hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
            initializer_range=cfg.qformer_initializer_range,
        )
        self.qformer = Blip2QFormerModel(qcfg)
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, cfg.qformer_hidden_size))
        nn.init.normal_(self.query_tokens, std=qcfg.initializer_range)
        self.llm_proj = nn.Linear(cfg.qformer_hidden_size, llm_hidden)
        self.loaded: set[str] = set()  # parameter names whose values came from a checkpoint

    # ---- weights: load, report, freeze -------------------------------------------------------------------------
    def load_qformer_checkpoint(self, path: str | Path) -> None:
        """Load `qformer.*` and `query_tokens` from a BLIP-2 checkpoint (safetensors, single or sharded).
        Tensors whose shape differs (the cross-attention key/value for a new encoder width) stay initialised."""
        from safetensors import safe_open

        path = Path(path)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"emr.bridge.qformer_checkpoint={path}: no .safetensors files there; give a "
                                    f"BLIP-2 checkpoint directory (e.g. Salesforce/blip2-opt-2.7b downloaded)")
        own = dict(self.named_parameters())
        skipped = []
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    if not (key.startswith("qformer.") or key == "query_tokens"):
                        continue
                    if key not in own:
                        skipped.append(f"{key} (not in this Q-Former)")
                        continue
                    t = st.get_tensor(key)
                    if tuple(t.shape) != tuple(own[key].shape):
                        skipped.append(f"{key} {tuple(t.shape)} != {tuple(own[key].shape)}")
                        continue
                    with torch.no_grad():
                        own[key].copy_(t)
                    self.loaded.add(key)
        logger.info("Q-Former checkpoint %s: %d tensors loaded, %d skipped", path, len(self.loaded), len(skipped))
        for s in skipped[:20]:
            logger.info("  skipped %s", s)

    def weight_report(self) -> dict:
        """Which parameters were loaded, which freshly initialised, and which train; grouped by bridge part."""
        rows = {}
        for name, p in self.named_parameters():
            part = name.split(".")[0]
            r = rows.setdefault(part, {"params": 0, "loaded": 0, "initialised": 0, "trainable": 0})
            r["params"] += p.numel()
            r["loaded" if name in self.loaded else "initialised"] += p.numel()
            r["trainable"] += p.numel() if p.requires_grad else 0
        return rows

    def set_trainable(self, patterns: list[str] | None = None) -> list[str]:
        """Freeze everything except parameters matching `patterns` (default: cfg.trainable). Freshly initialised
        frozen parameters raise unless cfg.allow_frozen_init (then a warning). Returns the trainable names."""
        patterns = list(self.cfg.trainable if patterns is None else patterns)
        names = [n for n, _ in self.named_parameters()]
        for p in patterns:
            if not any(_matches(n, [p]) for n in names):
                raise ValueError(f"emr.bridge.trainable: {p!r} matches no parameter; parts: {', '.join(BRIDGE_PARTS)}")
        trainable = []
        for n, p in self.named_parameters():
            p.requires_grad_(_matches(n, patterns))
            if p.requires_grad:
                trainable.append(n)
        frozen_fresh = [n for n, p in self.named_parameters() if not p.requires_grad and n not in self.loaded]
        if frozen_fresh:
            parts = sorted({n.split(".")[0] for n in frozen_fresh})
            crossatt = [n for n in frozen_fresh if "crossattention" in n]
            msg = (f"{len(frozen_fresh)} freshly initialised bridge parameters would stay FROZEN at random values "
                   f"(parts: {', '.join(parts)}; e.g. {frozen_fresh[0]}"
                   + (f"; {len(crossatt)} are Q-Former cross-attention" if crossatt else "")
                   + "). Add them to emr.bridge.trainable, load them (emr.bridge.qformer_checkpoint), or set "
                     "emr.bridge.allow_frozen_init: true to reproduce the seeds' setting on purpose.")
            if not self.cfg.allow_frozen_init:
                raise ValueError(msg)
            logger.warning("!" * 20 + " " + msg)
        return trainable

    def log_weights(self) -> None:
        for part, r in self.weight_report().items():
            logger.info("bridge %-13s %9d params: loaded %9d, freshly initialised %9d, trainable %9d",
                        part, r["params"], r["loaded"], r["initialised"], r["trainable"])

    # ---- forward -------------------------------------------------------------------------------------------
    def frames(self, image_emb: torch.Tensor, question_emb: torch.Tensor) -> torch.Tensor:
        """image_emb [B, D], question_emb [B, R, D] -> frame features [B, R, H] for rounds 1..R."""
        B, R, _ = question_emb.shape
        x = torch.cat([image_emb[:, None].expand(B, R, -1), question_emb], dim=-1)
        x = x * (self.cfg.embed_scale if self.cfg.embed_scale is not None else self.cfg.embed_dim ** 0.5)
        h = self.imagebind_fc(x)
        if self.cfg.use_turn_pe:
            turns = torch.arange(1, R + 1, device=h.device)
            if R >= self.cfg.num_turns:
                raise ValueError(f"{R} rounds need turn_pe with more than {R} rows (emr.bridge.num_turns)")
            h = h + self.turn_pe(turns)[None]
        return self.ln_vision(h)

    def query_outputs(self, image_emb: torch.Tensor, question_emb: torch.Tensor) -> torch.Tensor:
        """[B, D], [B, R, D] -> soft prompts [B, R, Q, llm_hidden]: round t's queries read the bank after turn t."""
        frames = self.frames(image_emb, question_emb)  # [B, R, H]
        B, R, H = frames.shape
        L = self.cfg.memory_bank_length if self.cfg.use_memory_bank else 1
        bank = MemoryBank(L)
        contexts = []
        for t in range(R):
            if self.cfg.use_memory_bank:
                contexts.append(bank.add(frames[:, t:t + 1]))  # [B, <=L, H]
            else:
                contexts.append(frames[:, t:t + 1])
        width = max(c.shape[1] for c in contexts)
        enc = frames.new_zeros(B, R, width, H)
        mask = torch.zeros(B, R, width, dtype=torch.long, device=frames.device)
        for t, c in enumerate(contexts):
            enc[:, t, :c.shape[1]] = c
            mask[:, t, :c.shape[1]] = 1
        queries = self.query_tokens.expand(B * R, -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=enc.view(B * R, width, H),
                           encoder_attention_mask=mask.view(B * R, width)).last_hidden_state
        return self.llm_proj(out).view(B, R, self.cfg.num_query_tokens, -1)


def save_bridge(bridge: EMRBridge, out_dir: str | Path, extra: dict | None = None) -> None:
    """Bridge weights (safetensors) + bridge config and weight report (JSON), written atomically."""
    from safetensors.torch import save

    from mmemory.io import atomic_write_bytes, atomic_write_json

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in bridge.state_dict().items()}
    atomic_write_bytes(out_dir / "bridge.safetensors", save(state))
    atomic_write_json(out_dir / "bridge_config.json",
                      {"bridge": asdict(bridge.cfg), "weights": bridge.weight_report(), **(extra or {})}, indent=2)


def load_bridge(out_dir: str | Path, llm_hidden: int, overrides: dict | None = None) -> EMRBridge:
    """A bridge saved by `save_bridge`; every parameter counts as loaded."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "bridge_config.json").read_text())
    cfg = BridgeConfig.from_dict({**meta["bridge"], **(overrides or {}), "qformer_checkpoint": None})
    bridge = EMRBridge(cfg, llm_hidden)
    missing, unexpected = bridge.load_state_dict(load_file(str(out_dir / "bridge.safetensors")), strict=False)
    if missing or unexpected:
        raise ValueError(f"{out_dir}/bridge.safetensors does not fit the bridge config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    bridge.loaded = {n for n, _ in bridge.named_parameters()}
    return bridge
