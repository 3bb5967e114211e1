"""The coref stage's tiny Llamas: built by path-loadable save_pretrained, and the task-agnostic copy pretraining.
Run: pytest tests/test_coref_models.py"""
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mmemory.coref.models import CorefToySize, build_toy_coref_models
from mmemory.training import pretrain_copy
from mmemory.coref.toy import make_toy_dialogues

SIZE = dict(hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)


def _train_json(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(make_toy_dialogues(40, seed=0)))
    return path


def test_copy_pretraining_lowers_the_copy_loss_and_never_sees_a_dialogue(tmp_path):
    out = tmp_path / "m"
    build_toy_coref_models(_train_json(tmp_path), {"m": out}, {"m": CorefToySize(**SIZE)})
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    stats = pretrain_copy(model, tok, steps=120, span=8, batch_size=16, lr=1e-2, seed=0)  # about 5 s
    assert stats["steps"] == 120 and stats["last_loss"] < stats["first_loss"] - 0.2, stats


def test_pretraining_is_deterministic_and_recorded(tmp_path):
    train = _train_json(tmp_path)
    size = CorefToySize(**SIZE, pretrain_steps=5, pretrain_span=8, pretrain_batch=4, pretrain_long_steps=3,
                        pretrain_long_span=24, pretrain_long_batch=2)
    a = build_toy_coref_models(train, {"m": tmp_path / "a"}, {"m": size}, seed=3)
    b = build_toy_coref_models(train, {"m": tmp_path / "b"}, {"m": size}, seed=3)
    assert a["m"]["pretrain"]["steps"] == 5 and a["m"]["pretrain"]["last_loss"] == b["m"]["pretrain"]["last_loss"]
    # the long-span phase runs after the short one and is recorded beside it
    assert a["m"]["pretrain"]["long"]["steps"] == 3
    assert a["m"]["pretrain"]["long"]["last_loss"] == b["m"]["pretrain"]["long"]["last_loss"]
    wa = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    plain = build_toy_coref_models(train, {"m": tmp_path / "c"}, {"m": CorefToySize(**SIZE)}, seed=3)
    assert plain["m"]["pretrain"] == {"steps": 0}


def test_the_tokenizer_learns_the_answers_in_the_trained_format(tmp_path):
    """coref.train.target decides the tokenizer's corpus: with `evidence`, its arrow " ->" is learnt as one token."""
    from mmemory.coref.models import coref_corpus

    train = _train_json(tmp_path)
    assert any(" -> " in text for text in coref_corpus(train, "evidence"))
    assert not any(" -> " in text for text in coref_corpus(train, "option"))
    build_toy_coref_models(train, {"m": tmp_path / "m"}, {"m": CorefToySize(**{**SIZE, "vocab_size": 1024})},
                           target="evidence")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.tokenize(" ->") == ["Ġ->"]
