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


def test_random_baseline_is_its_exact_expectation_and_the_heuristics_are_counted():
    from mmemory.coref.evaluate import baseline_rows

    train, test = (validate_dialogues(make_toy_dialogues(n, seed=s))[0] for n, s in ((40, 0), (24, 1)))
    val = validate_dialogues(make_toy_dialogues(24, seed=2))[0]
    rows = {r["baseline"]: r for r in baseline_rows(train, test)}
    rand = rows["random label"]
    assert rand["object_acc"]["value"] == rand["object_acc"]["lo"] == rand["object_acc"]["hi"] == 0.25
    assert rand["photo_acc"]["value"] == 0.5  # two of the four toy choices lie in the answer's photo
    letter = rows["best single letter on test"]["object_acc"]
    # the ceiling of a constant letter on the test split itself: at least a quarter (four letters)
    assert letter["n"] == 24 and letter["value"] >= 0.25 and letter["lo"] < letter["value"] < letter["hi"]
    assert {"first-mentioned object", "most-mentioned object", "most recently mentioned object"} <= set(rows)
    assert "shortcut logistic regression" not in rows and "rule reader (oracle)" not in rows  # no val, no toy flag
    full = {r["baseline"]: r for r in baseline_rows(train, test, val=val, oracle=True)}
    assert full["shortcut logistic regression"]["kind"] == "shortcut"
    assert full["shortcut logistic regression"]["chosen_on_val"]["C"] in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    assert full["rule reader (oracle)"]["kind"] == "oracle" and full["rule reader (oracle)"]["object_acc"]["value"] == 1
    assert all(len(r["labels"]) == 24 for r in full.values() if r["labels"] is not None)


def test_answer_format_picks_the_likelihood_continuation():
    from mmemory.config import ConfigError
    from mmemory.coref.evaluate import CorefEvalConfig
    from mmemory.coref.prompts import format_option

    c = validate_dialogues(make_toy_dialogues(4, seed=0))[0][0].choices[2]
    assert format_option(c) == f" C) {c.text}" and format_option(c, "text") == f" {c.text}"
    with pytest.raises(ConfigError, match="answer_format 'letter'"):
        CorefEvalConfig(answer_format="letter")


def test_an_untuned_model_answers_in_its_own_format(tmp_path, tiny):
    """coref.eval.untuned_answer_format: the `before` variant is scored in it (the toy's `text`: every option the
    same form), a fine-tuned one in answer_format; null keeps answer_format for both."""
    from mmemory.config import ConfigError
    from mmemory.coref.evaluate import CorefEvalConfig
    from mmemory.coref.stage import run_eval

    model, tok = tiny
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "test.json").write_text(json.dumps(make_toy_dialogues(3, seed=5)))
    cfg = {"answer_format": "evidence", "untuned_answer_format": "text", "max_new_tokens": 4}
    for untuned, fmt in ((True, "text"), (False, "evidence")):
        out = run_eval(str(tmp_path / "m"), str(tmp_path / "test.json"), str(tmp_path / "e.json"), cfg, untuned)
        assert out["settings"]["answer_format"] == fmt
    out = run_eval(str(tmp_path / "m"), str(tmp_path / "test.json"), str(tmp_path / "e.json"),
                   {**cfg, "untuned_answer_format": None}, untuned=True)
    assert out["settings"]["answer_format"] == "evidence"
    with pytest.raises(ConfigError, match="untuned_answer_format 'words'"):
        CorefEvalConfig(untuned_answer_format="words")
