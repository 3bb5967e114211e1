"""The memory positive control end to end on synthetic data: toy users whose last question asks about an earlier
picture, the retrieved / oracle / wrong memory blocks, the question prior, and the claims (mmemory.controls).
Run: pytest tests/test_positive_controls.py"""
from __future__ import annotations

import json
import random
import re

import pytest

from mmemory.controls import claim, decide, not_shown, paired_ci95, table_rows
from mmemory.memory.context import needed_rank, needed_recall, user_chains
from mmemory.reminder.prompts import (MEMORY_VARIANTS, last_round_samples, simulated_memories, variant_memories)
from mmemory.reminder.stage import group_rows, question_prior, reminder_controls
from mmemory.toy.visdial import Obj, build_toy_visdial, caption, earlier_picture_question
from mmemory.visdial import load_visdial, validate_visdial


# ---------------------------------------------------------------- claims

def test_a_claim_holds_only_beyond_its_spread_and_its_interval():
    assert decide("greater", 0.3, 0.05, 0.1) and not decide("greater", 0.08, 0.05, 0.1)
    assert not decide("greater", 0.08, 0.1, 0.05)  # inside the seed spread
    assert decide("at_least", -0.05, None, 0.1) and not decide("at_least", -0.2, 0.05, 0.1)
    assert decide("within", 0.04, 0.05, None) and not decide("within", 0.2, 0.05, 0.1)
    with pytest.raises(ValueError):
        decide("bigger", 1, 0, 0)


def test_claim_from_seeds_and_items():
    t = [[1, 1, 1, 0] * 10, [1, 1, 0, 0] * 10, [1, 1, 1, 1] * 10]  # three seeds, 40 paired items
    c = [[0, 0, 0, 1] * 10]  # a prior: one value for every seed
    e = claim("x beats y", "x", "y", "exact match", [sum(s) / 40 for s in t], [0.25], per_item=(t, c))
    assert e["n"] == 40 and e["n_seeds"] == 3
    assert e["difference"] == pytest.approx(0.75 - 0.25)
    assert e["spread"] == pytest.approx(0.25)  # sd of 0.5, 0.25, 0.75
    item_t = [sum(col) / 3 for col in zip(*t)]
    assert e["ci95"] == pytest.approx(paired_ci95(item_t, c[0]))
    assert e["holds"] == (e["difference"] > max(e["spread"], e["ci95"]))
    one = claim("x beats y", "x", "y", "em", [0.9], [0.1], ci95=0.05)
    assert one["spread"] is None and one["holds"]
    assert table_rows("s", [one])[0]["seed spread"] == "one seed"
    assert not not_shown("z", "cannot")["holds"]


def test_a_lower_is_better_claim_keeps_its_treatment_and_counts_the_error_saved():
    e = claim("x errs less than y", "x", "y", "MAE", [1.0, 1.2], [3.0], ci95=0.5, lower_is_better=True)
    assert e["treatment"] == "x" and e["treatment_value"] == pytest.approx(1.1) and e["control_value"] == 3.0
    assert e["difference"] == pytest.approx(1.9) and e["lower_is_better"] and e["holds"]
    worse = claim("x errs less than y", "x", "y", "MAE", [4.0], [3.0], ci95=0.5, lower_is_better=True)
    assert worse["difference"] == pytest.approx(-1.0) and not worse["holds"]
    assert "lower_is_better" not in claim("a", "x", "y", "em", [0.5], [0.4])


# ---------------------------------------------------------------- toy users

@pytest.fixture(scope="module")
def users(tmp_path_factory):
    root = tmp_path_factory.mktemp("users")
    build_toy_visdial(root, n_train=24, n_val=8, n_test=16, image_size=32, seed=1, dialogs_per_user=4,
                      memory_share=0.9)
    splits = {}
    for name in ("train", "val", "test"):  # as prepare_data writes them: dialogues carry image_path
        out = root / f"{name}.json"
        out.write_text(json.dumps(validate_visdial(root / f"visdial_1.0_{name}.json", root / "images" / name).to_json()))
        splits[name] = load_visdial(out)
    return root, splits


def test_earlier_picture_questions_are_answered_by_that_picture_only(users):
    _, splits = users
    for split in splits.values():
        by_id = split.by_image_id()
        asked = [d for d in split.dialogs if d["memory"]["asks_about"] is not None]
        assert asked, "memory_share 0.9 must give earlier-picture questions"
        for d in asked:
            e = by_id[d["memory"]["asks_about"]]
            assert e["memory"]["user"] == d["memory"]["user"] and e["image_id"] < d["image_id"]
            q, a = split.question(d["dialog"][-1]), split.answer(d["dialog"][-1])
            m = re.fullmatch(r"in the earlier picture, where was the (\w+ \w+)\?", q)
            assert m, q
            assert f"a {m.group(1)} {a}" in e["caption"]  # the earlier picture's caption holds the answer
            # the object is in that picture and no other of the user's pictures so far (the current one included)
            own = [x for x in split.dialogs if x["memory"]["user"] == d["memory"]["user"]
                   and x["image_id"] <= d["image_id"]]
            assert [x["image_id"] for x in own if f" {m.group(1)} " in x["caption"]] == [e["image_id"]]
        # a user asks each earlier-picture question once; the first dialogue of a user never has one
        for chain in user_chains(split.dialogs, 4):
            assert chain[0]["memory"]["asks_about"] is None
            qs = [split.question(x["dialog"][-1]) for x in chain if x["memory"]["asks_about"] is not None]
            assert len(qs) == len(set(qs))


def test_earlier_picture_question_refuses_an_ambiguous_object():
    red_circle, blue_square = Obj("red", "circle", 0, 0), Obj("blue", "square", 1, 1)
    # both earlier objects are in the current picture too: no question can single the earlier picture out
    assert earlier_picture_question([[red_circle, blue_square]], [blue_square, red_circle], random.Random(0)) is None
    e, q, a = earlier_picture_question([[red_circle, blue_square]], [blue_square], random.Random(0))
    assert (e, q, a) == (0, "in the earlier picture, where was the red circle?", "at the top left")
    assert earlier_picture_question([[red_circle]], [], random.Random(0), asked={q}) is None  # asked before
    assert caption([red_circle]).startswith("a picture of a red circle at the top left")


def test_memory_blocks_of_the_variants(users):
    _, splits = users
    split = splits["test"]
    by_id = split.by_image_id()
    # a retrieved context of 3 memories per dialogue, from the dialogue's own user (the earlier pictures)
    retrieved = {}
    for chain in user_chains(split.dialogs, 4):
        for i, d in enumerate(chain):
            retrieved[d["image_id"]] = [{"text": f"[picture] {e['caption']}", "image": None, "score": 1.0 - j / 10,
                                         "source": f"{e['image_id']}:0"} for j, e in enumerate(reversed(chain[:i]))]
    fm = variant_memories("finetuned_memory", split, retrieved, 2)
    oracle = variant_memories("oracle_memory", split, retrieved, 2)
    wrong = variant_memories("wrong_memory", split, retrieved, 2)
    for d in split.dialogs:
        i = d["image_id"]
        assert fm[i] == retrieved[i][:2] and len(oracle[i]) == len(fm[i]) or not fm[i]
        about = d["memory"]["asks_about"]
        if about is not None:
            assert oracle[i][0]["text"] == f"[picture] {by_id[about]['caption']}"
            assert needed_rank(d, oracle[i]) == 1
        else:
            assert oracle[i] == fm[i]
        # another user's block, never this user's
        users_of = {m["source"].split(":")[0] for m in wrong[i]}
        assert all(by_id[int(u)]["memory"]["user"] != d["memory"]["user"] for u in users_of)
    assert set(MEMORY_VARIANTS) == {"finetuned_memory", "oracle_memory", "wrong_memory"}
    with pytest.raises(KeyError, match="no entry"):
        variant_memories("oracle_memory", split, {}, 2)
    rec = needed_recall(split, {str(k): v for k, v in retrieved.items()}, ks=(1, 3))
    assert rec["earlier_picture_questions"] == sum(d["memory"]["asks_about"] is not None for d in split.dialogs)


def test_training_memory_block_always_holds_the_needed_picture(users):
    import numpy as np

    _, splits = users
    split = splits["train"]
    by_id = split.by_image_id()
    rng = np.random.default_rng(0)
    for d in split.dialogs:
        mems = simulated_memories(split, d, len(d["dialog"]), 3, rng)
        assert len(mems) <= 3
        about = d["memory"]["asks_about"]
        if about is not None:
            assert f"[picture] {by_id[about]['caption']}" in [m["text"] for m in mems]
        target = f"{split.question(d['dialog'][-1])} {split.answer(d['dialog'][-1])}"
        assert all(m["text"] != target for m in mems)  # never the held-out round


def test_question_prior_never_looks_at_a_picture(users):
    root, splits = users
    prior = question_prior(splits["train"].path, splits["test"].path)
    assert set(prior) == {d["image_id"] for d in splits["test"].dialogs}
    answers = set(splits["train"].answers)
    assert all(a in answers for a in prior.values())


def _metrics(items):
    return {"per_item": [{"image_id": i, "group": g, "answer": a, "reference": r, "exact": int(a == r)}
                         for i, g, a, r in items]}


def test_group_rows_and_claims_on_hand_made_results():
    refs = [(i, "current" if i < 20 else "earlier", "yes" if i % 2 else "red") for i in range(40)]
    prior = {i: "yes" for i, _, _ in refs}  # right on half the current questions, never on the earlier ones

    def run(right_current, right_earlier, seed=0):
        items = []
        for i, g, r in refs:
            ok = (i < right_current) if g == "current" else (i - 20 < right_earlier)
            items.append((i, g, r if ok else "blue", r))
        return _metrics(items)

    per_seed = {"finetuned": [run(18, 2), run(17, 3), run(19, 2)],
                "finetuned_caption": [run(18, 2), run(18, 2), run(18, 2)],
                "finetuned_memory": [run(18, 15), run(18, 16), run(18, 14)],
                "oracle_memory": [run(18, 19), run(18, 18), run(18, 19)],
                "wrong_memory": [run(18, 2), run(18, 3), run(18, 2)]}
    rows, exact = group_rows(per_seed, prior)
    by = {r["variant"]: r for r in rows}
    assert by["question prior (no picture, no memory)"]["exact match (current picture)"] == 0.5
    assert by["finetuned_memory"]["exact match (earlier picture)"] == pytest.approx(0.75)
    assert by["finetuned"]["top answer share"] < 0.6
    controls = {c["treatment"] + " vs " + c["control"]: c for c in reminder_controls(exact, per_seed)}
    assert controls["finetuned vs question prior"]["holds"]
    assert controls["finetuned_memory vs finetuned"]["holds"]
    assert controls["finetuned_memory vs finetuned"]["difference"] == pytest.approx(0.75 - 0.1167, abs=1e-3)
    assert controls["oracle_memory vs finetuned_memory"]["holds"]  # at_least
    assert controls["wrong_memory vs finetuned"]["holds"]  # within
    assert controls["finetuned_memory vs wrong_memory"]["holds"]
    # a broken memory (no better than no memory) does not hold
    per_seed["finetuned_memory"] = per_seed["finetuned"]
    _, exact = group_rows(per_seed, prior)
    broken = {c["treatment"] + " vs " + c["control"]: c for c in reminder_controls(exact, per_seed)}
    assert not broken["finetuned_memory vs finetuned"]["holds"]
    assert not broken["finetuned_memory vs wrong_memory"]["holds"]
    json.dumps(broken)  # metrics.json-ready


# ---------------------------------------------------------------- the memory stage's choice on val

def test_reminder_context_weights_are_chosen_on_val_and_reused_on_test(users, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _memory_fixtures import FakeEncoder

    from mmemory.encoders import CachedEncoder
    from mmemory.memory.stage import run_reminder_context

    root, splits = users
    store = {"index": {"type": "flat"}, "half_life": 24.0, "recency_unit": "hours"}
    enc = CachedEncoder(FakeEncoder())
    # a candidate that can never rank the needed picture high (recency only: the newest memories) and relevance
    candidates = {"recency only": {"recency": 1.0}, "relevance": {"relevance": 1.0}}
    val_m = run_reminder_context(str(root / "val.json"), enc, 5, 4, {"saliency": 1.0}, store, str(tmp_path / "v"),
                                 tmp_path / "ctx_val.json", tmp_path / "val_metrics.json", encoder_name="fake",
                                 candidates=candidates, select_k=3)
    table = next(v for k, v in val_m["tables"].items() if k.startswith("Weights"))
    scores = {r["weights"]: r["needed_picture_recall@3"] for r in table}
    assert set(scores) == {"configured", "recency only", "relevance"}
    assert val_m["chosen"]["value"] == max(scores.values()) and val_m["chosen"]["chosen_on"] == "val"
    assert [r["chosen"] for r in table].count(True) == 1
    test_m = run_reminder_context(str(root / "test.json"), enc, 5, 4, {"saliency": 1.0}, store, str(tmp_path / "t"),
                                  tmp_path / "ctx_test.json", tmp_path / "test_metrics.json", encoder_name="fake",
                                  chosen_metrics=str(tmp_path / "val_metrics.json"), select_k=3)
    assert test_m["chosen"] == val_m["chosen"]  # test reuses val's choice and chooses nothing itself
    assert not any(k.startswith("Weights") for k in test_m["tables"])
    context = json.loads((tmp_path / "ctx_test.json").read_text())
    by_id = splits["test"].by_image_id()
    for iid, mems in context.items():  # one store per user: never another user's memory
        user = by_id[int(iid)]["memory"]["user"]
        assert all(by_id[int(m["source"].split(":")[0])]["memory"]["user"] == user for m in mems)


# ---------------------------------------------------------------- the stand-in learns to see and read

def test_pretrain_toy_vlm_uses_train_scenes_only_and_saves_a_loadable_model(tmp_path):
    from transformers import AutoModelForImageTextToText

    from mmemory.toy.models import ToySizes, build_tiny_gemma3, train_tokenizer
    from mmemory.toy.pretrain_vlm import PretrainVLMConfig, _scenes, make_examples, pretrain_toy_vlm
    from mmemory.toy.visdial import scene_split

    shares = {"train": 10, "val": 4, "test": 4}
    scenes = _scenes(30, "train", shares, 3, 0, "train")
    assert all(scene_split(s, shares, 0) == "train" for s in scenes)
    cfg = PretrainVLMConfig(scenes=30, steps=3, batch_size=4, warmup_steps=1, eval_scenes=4, siglip_steps=2,
                            siglip_batch_size=4, copy_steps=4, copy_long_steps=2, copy_long_span=8)
    examples = make_examples(scenes, 60, cfg, random.Random(0), 32)
    assert {e["task"] for e in examples} == {"caption", "vqa", "read"}
    for e in examples:  # the question's answer is never in the user text (except reading, where it must be)
        assert e["text"].rstrip().split("\n")[-1].startswith("Q: ") or e["task"] == "caption"
    where = [e for e in examples if e["task"] == "read" and re.search(r"where (is|was) the", e["text"].split("\n")[-1])]
    assert where
    for e in where:  # reading answers name the object, then the place that follows it in a picture's note
        name = re.search(r"where (?:is|was) the (\w+ \w+)\?$", e["text"]).group(1)
        place = re.fullmatch(rf"the {name} (?:is|was) (.+)", e["answer"]).group(1)
        assert f"a {name} {place}" in e["text"]
    tok = train_tokenizer([f"{t['text']} {t['answer']}" for t in examples] + ["describe the picture."], 300,
                          tmp_path / "tok")
    sizes = ToySizes(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, vision_hidden_size=32,
                     vision_patch_size=8, mm_tokens_per_image=4, image_size=32, vlm_initializer_range=0.2)
    build_tiny_gemma3(tok, sizes, tmp_path / "vlm")
    before = AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm").model.vision_tower.state_dict()
    m = pretrain_toy_vlm(str(tmp_path / "vlm"), str(tmp_path / "out"), shares, 32, 3, cfg)
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    assert m["siglip"]["steps"] == 2 and m["steps"] == 3 and m["train_scenes"] == 30
    assert m["copy"]["steps"] == 4 and m["copy"]["long"]["steps"] == 2
    assert set(m["val_exact_match_after"]) == {"caption", "vqa", "read"}
    changed = [k for k, v in after.model.vision_tower.state_dict().items() if not torch_equal(v, before[k])]
    assert changed  # the SigLIP and generative stages trained the vision tower


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_emr_lists_its_ablations_as_not_shown_whether_or_not_they_ran():
    from mmemory.emr.report import emr_controls

    per_seed = {"after": [{"exact_match": 0.55, "n_generated_rounds": 800}],
                "question_prior": [{"exact_match": 0.49}]}
    rows = emr_controls(per_seed)
    assert rows[0]["holds"] and rows[0]["difference"] > 0  # 0.06 over 800 rounds is beyond the interval
    ablations = {r["claim"]: r for r in rows[1:]}
    assert set(ablations) == {"EMR: turn_pe helps", "EMR: the memory bank helps"}
    assert all(not r["holds"] and "not run" in r["note"] for r in ablations.values())
    ran = emr_controls({**per_seed, "no_turn_pe": [{"exact_match": 0.55, "n_generated_rounds": 800}]})
    assert "not run" not in next(r for r in ran if "turn_pe" in r["claim"])["note"]
