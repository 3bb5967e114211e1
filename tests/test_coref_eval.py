"""The coref evaluation's pieces: the option-likelihood scorer against a hand computation, acc vs acc_norm, Wilson
intervals, and the toy models it scores. Run: pytest tests/test_coref_eval.py"""
import json

import pytest
import torch

from mmemory.coref.evaluate import ci, label_accuracy, option_loglikelihoods, pick_options
from mmemory.coref.models import build_toy_coref_models
from mmemory.coref.toy import make_toy_dialogues
from mmemory.coref.data import validate_dialogues


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("coref")
    (root / "train.json").write_text(json.dumps(make_toy_dialogues(40, seed=0)))
    build_toy_coref_models(root / "train.json", {"s": root / "s"},
                           {"s": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 400}}, seed=0)
    model = AutoModelForCausalLM.from_pretrained(root / "s").eval()
    return model, AutoTokenizer.from_pretrained(root / "s")


def test_option_loglikelihood_equals_the_hand_computed_sum_over_the_continuation_tokens(tiny):
    model, tok = tiny
    prompt, options = 'A: "I love the mug."\n\nAnswer:', [" A) the mug in A's photo", " B) the lamp"]
    got = option_loglikelihoods(model, tok, prompt, options)
    for (ll, chars), option in zip(got, options):
        ctx = tok(prompt).input_ids
        whole = tok(prompt + option).input_ids
        assert whole[:len(ctx)] == ctx
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
        by_hand = sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))
        assert ll == pytest.approx(by_hand, abs=1e-4)
        assert chars == len(option.lstrip())


def test_acc_and_acc_norm_disagree_when_a_long_option_has_more_total_but_less_per_character():
    scored = [(-10.0, 40), (-6.0, 10)]  # the second is likelier in sum, the first per character
    assert pick_options(scored) == (1, 0)


def test_wilson_interval_matches_known_values():
    assert ci(8, 10) == pytest.approx((0.490, 0.943), abs=1e-3)
    assert ci(0, 0) == (0.0, 1.0)
    lo, hi = ci(277, 346)  # the seed's 0.80 on 346 test items: about +-4 points
    assert 0.75 < lo < 0.77 and 0.83 < hi < 0.85


def test_an_unparsed_answer_is_wrong_not_dropped():
    dialogues = validate_dialogues(make_toy_dialogues(8, seed=1))[0]
    labels = [d.answer for d in dialogues[:4]] + [None] * 4
    acc = label_accuracy(dialogues, labels)["object_acc"]
    assert (acc["k"], acc["n"], acc["value"]) == (4, 8, 0.5)
