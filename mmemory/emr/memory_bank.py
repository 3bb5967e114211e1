"""MA-LMM's memory bank, across dialogue turns (each turn is a frame).

MA-LMM (He et al., CVPR 2024) keeps the features of past frames in a bank of fixed length. When a new frame would
overflow it, the bank is compressed: the cosine similarity of every temporally adjacent pair is computed, and the
most similar pair is merged into one entry by a size-weighted average (the size counts how many original frames an
entry stands for), so the bank keeps its length and its temporal order. This is a re-implementation (salesforce-lavis
cannot be installed beside transformers 5); it works on a batch of dialogues at once.
"""
from __future__ import annotations

import torch


def merge_most_similar_adjacent(bank: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One compression step. bank [B, T, N, H] (T entries of N tokens), sizes [B, T] -> bank [B, T-1, N, H].

    Per dialogue, the adjacent pair (t, t+1) with the highest cosine similarity (averaged over token positions) is
    replaced by (s_t * f_t + s_{t+1} * f_{t+1}) / (s_t + s_{t+1}) with size s_t + s_{t+1}.
    """
    B, T = bank.shape[:2]
    if T < 2:
        raise ValueError("a memory bank needs at least two entries to merge")
    a, b = bank[:, :-1], bank[:, 1:]
    sim = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(-1)  # [B, T-1]
    t = sim.argmax(dim=1)  # [B]
    rows = torch.arange(B, device=bank.device)
    s_a, s_b = sizes[rows, t], sizes[rows, t + 1]
    w_a = (s_a / (s_a + s_b)).to(bank.dtype)[:, None, None]
    merged = w_a * bank[rows, t] + (1 - w_a) * bank[rows, t + 1]  # [B, N, H]
    # keep entries 0..T-1 except t+1, with entry t replaced by the merged one
    idx = torch.arange(T, device=bank.device)[None, :].expand(B, T)
    keep = idx != (t + 1)[:, None]
    new_bank = bank[keep].view(B, T - 1, *bank.shape[2:]).clone()
    new_sizes = sizes[keep].view(B, T - 1).clone()
    new_bank[rows, t] = merged
    new_sizes[rows, t] = s_a + s_b
    return new_bank, new_sizes


class MemoryBank:
    """A batch of per-dialogue memory banks of at most `length` entries (frames of N tokens each)."""

    def __init__(self, length: int):
        if length < 1:
            raise ValueError(f"memory bank length must be >= 1, got {length}")
        self.length = length
        self.bank: torch.Tensor | None = None  # [B, T, N, H]
        self.sizes: torch.Tensor | None = None  # [B, T]

    def add(self, frame: torch.Tensor) -> torch.Tensor:
        """Append frame [B, N, H]; compress if over length; return the bank's tokens [B, T*N, H] (T <= length)."""
        f = frame[:, None]
        s = torch.ones(frame.shape[0], 1, device=frame.device, dtype=torch.float32)
        if self.bank is None:
            self.bank, self.sizes = f, s
        else:
            self.bank = torch.cat([self.bank, f], dim=1)
            self.sizes = torch.cat([self.sizes, s], dim=1)
        if self.bank.shape[1] > self.length:
            if self.length == 1:  # nothing to merge with: a bank of one keeps the mean of everything seen
                w = (self.sizes[:, :1] / self.sizes.sum(1, keepdim=True))[:, :, None, None]
                self.bank = w * self.bank[:, :1] + (1 - w) * self.bank[:, 1:]
                self.sizes = self.sizes.sum(1, keepdim=True)
            else:
                self.bank, self.sizes = merge_most_similar_adjacent(self.bank, self.sizes)
        B, T, N, H = self.bank.shape
        return self.bank.reshape(B, T * N, H)
