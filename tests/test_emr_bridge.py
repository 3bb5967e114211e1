"""EMR bridge and memory bank: `pytest tests/test_emr_bridge.py` (offline, random tensors, tiny sizes)."""
from __future__ import annotations

import logging

import pytest
import torch

from mmemory.emr.bridge import BridgeConfig, EMRBridge, load_bridge, save_bridge
from mmemory.emr.memory_bank import MemoryBank, merge_most_similar_adjacent

TINY = dict(embed_dim=8, hidden_size=16, num_query_tokens=3, qformer_hidden_size=16, qformer_layers=2,
            qformer_heads=2, qformer_intermediate_size=32, cross_attention_frequency=1, memory_bank_length=3)
ALL = ["imagebind_fc", "ln_vision", "turn_pe", "query_tokens", "qformer", "llm_proj"]


def test_merge_picks_most_similar_adjacent_pair_with_size_weights():
    e = torch.eye(4)
    # entries: a, b, b', c  where b and b' are nearly identical -> they merge; a and c are untouched
    bank = torch.stack([e[0], e[1], e[1] + 0.01 * e[2], e[3]])[None, :, None, :]  # [1, 4, 1, 4]
    sizes = torch.tensor([[1.0, 3.0, 1.0, 1.0]])
    new, new_sizes = merge_most_similar_adjacent(bank, sizes)
    assert new.shape == (1, 3, 1, 4)
    torch.testing.assert_close(new[0, 0, 0], e[0])
    torch.testing.assert_close(new[0, 1, 0], (3 * e[1] + (e[1] + 0.01 * e[2])) / 4)  # size-weighted
    torch.testing.assert_close(new[0, 2, 0], e[3])
    assert new_sizes.tolist() == [[1.0, 4.0, 1.0]]


def test_merge_is_per_dialogue_in_a_batch():
    e = torch.eye(3)
    b0 = torch.stack([e[0], e[0], e[1]])  # pair (0, 1) most similar
    b1 = torch.stack([e[0], e[1], e[1]])  # pair (1, 2) most similar
    new, sizes = merge_most_similar_adjacent(torch.stack([b0, b1])[:, :, None], torch.ones(2, 3))
    assert sizes.tolist() == [[2.0, 1.0], [1.0, 2.0]]
    torch.testing.assert_close(new[0, :, 0], torch.stack([e[0], e[1]]))
    torch.testing.assert_close(new[1, :, 0], torch.stack([e[0], e[1]]))


def test_memory_bank_keeps_length_and_total_size():
    bank = MemoryBank(3)
    torch.manual_seed(0)
    for t in range(7):
        out = bank.add(torch.randn(2, 1, 5))
        assert out.shape == (2, min(t + 1, 3), 5)
    assert bank.sizes.sum(1).tolist() == [7.0, 7.0]  # every turn is still accounted for


def test_query_outputs_shapes_and_causality():
    torch.manual_seed(0)
    bridge = EMRBridge(BridgeConfig(**TINY, trainable=ALL), llm_hidden=12).eval()
    img, q = torch.randn(2, 8), torch.randn(2, 5, 8)
    out = bridge.query_outputs(img, q)
    assert out.shape == (2, 5, 3, 12)
    q2 = q.clone()
    q2[:, 4] += 1.0  # changing the last turn must not change earlier rounds' outputs (no peeking ahead)
    out2 = bridge.query_outputs(img, q2)
    torch.testing.assert_close(out[:, :4], out2[:, :4])
    assert not torch.allclose(out[:, 4], out2[:, 4])


def test_memory_bank_ablation_sees_only_the_current_turn():
    torch.manual_seed(0)
    bridge = EMRBridge(BridgeConfig(**TINY, use_memory_bank=False, use_turn_pe=False, trainable=ALL), 12).eval()
    img, q = torch.randn(1, 8), torch.randn(1, 4, 8)
    q2 = q.clone()
    q2[:, 0] += 1.0  # an earlier turn cannot influence later rounds without the bank (and without turn_pe)
    torch.testing.assert_close(bridge.query_outputs(img, q)[:, 1:], bridge.query_outputs(img, q2)[:, 1:])


def test_turn_pe_makes_rounds_distinguishable():
    torch.manual_seed(0)
    img = torch.randn(1, 8)
    q = torch.randn(1, 1, 8).expand(1, 2, 8)  # the same question twice
    with_pe = EMRBridge(BridgeConfig(**TINY, use_memory_bank=False, trainable=ALL), 12).eval()
    no_pe = EMRBridge(BridgeConfig(**TINY, use_memory_bank=False, use_turn_pe=False, trainable=ALL), 12).eval()
    assert not torch.allclose(with_pe.frames(img, q)[:, 0], with_pe.frames(img, q)[:, 1])
    torch.testing.assert_close(no_pe.frames(img, q)[:, 0], no_pe.frames(img, q)[:, 1])


def test_freezing_fresh_weights_is_an_error_unless_allowed(caplog):
    bridge = EMRBridge(BridgeConfig(**TINY, trainable=["imagebind_fc", "turn_pe"]), 12)
    with pytest.raises(ValueError, match="FROZEN.*cross-attention"):
        bridge.set_trainable()
    seeds = EMRBridge(BridgeConfig(**TINY, trainable=["imagebind_fc", "turn_pe"], allow_frozen_init=True), 12)
    with caplog.at_level(logging.WARNING):
        names = seeds.set_trainable()
    assert "FROZEN" in caplog.text and "qformer" in caplog.text
    assert {n.split(".")[0] for n in names} == {"imagebind_fc", "turn_pe"}
    assert not any(p.requires_grad for n, p in seeds.named_parameters() if n.startswith("qformer"))


def test_trainable_patterns_and_unknown_names():
    bridge = EMRBridge(BridgeConfig(**TINY, trainable=ALL), 12)
    bridge.loaded = {n for n, _ in bridge.named_parameters() if "crossattention" not in n}
    names = bridge.set_trainable(["qformer.*crossattention*"])
    assert names and all("crossattention" in n for n in names)
    with pytest.raises(ValueError, match="matches no parameter"):
        bridge.set_trainable(["imagebind_fcc"])


def test_weight_report_and_qformer_checkpoint_loading(tmp_path):
    from safetensors.torch import save_file

    src = EMRBridge(BridgeConfig(**{**TINY, "hidden_size": 24}), 12)  # other encoder width: cross-attn K/V differ
    state = {f"qformer.{k}": v.contiguous() for k, v in src.qformer.state_dict().items()}
    state["query_tokens"] = src.query_tokens.detach().clone()
    state["language_projection.weight"] = torch.zeros(4, 4)  # other BLIP-2 parts are ignored
    save_file(state, str(tmp_path / "model.safetensors"))
    bridge = EMRBridge(BridgeConfig(**TINY, qformer_checkpoint=str(tmp_path)), 12)
    bridge.load_qformer_checkpoint(tmp_path)
    rep = bridge.weight_report()
    assert rep["query_tokens"]["loaded"] == rep["query_tokens"]["params"]
    assert rep["imagebind_fc"]["loaded"] == 0 and rep["imagebind_fc"]["initialised"] > 0
    assert 0 < rep["qformer"]["initialised"] < rep["qformer"]["params"]  # the cross-attention key/value
    fresh = [n for n, _ in bridge.named_parameters() if n.startswith("qformer") and n not in bridge.loaded]
    assert fresh and all("crossattention" in n for n in fresh)
    torch.testing.assert_close(bridge.query_tokens, src.query_tokens)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    bridge = EMRBridge(BridgeConfig(**TINY, trainable=ALL), 12).eval()
    save_bridge(bridge, tmp_path, {"variant": "after"})
    again = load_bridge(tmp_path, 12).eval()
    img, q = torch.randn(2, 8), torch.randn(2, 3, 8)
    torch.testing.assert_close(bridge.query_outputs(img, q), again.query_outputs(img, q))
