"""The coref table (rule coref_table) on hand-made eval.json dicts: cells and intervals, the "beats by more than its
CI" rule, the check that every eval.json scored the test split, and the files build_table writes.
Run: pytest tests/test_coref_table.py"""
import json

import pytest

from mmemory.coref.data import dump_coref, validate_dialogues
from mmemory.coref.evaluate import rate
from mmemory.coref.report import beats_by_ci, comparison_table, coref_tables, main_table, rate_cell, seed_rate
from mmemory.coref.stage import build_table
from mmemory.report import format_estimate
from mmemory.coref.toy import make_toy_dialogues


def fake_eval(test, k_object: int, k_acc: int | None = None, ids=None) -> dict:
    """An eval.json as evaluate_coref writes it, with chosen counts of right answers (the rest of the numbers fixed)."""
    n = len(test)
    k_acc = k_object if k_acc is None else k_acc
    gen = {"object_acc": rate(k_object, n), "photo_acc": rate(min(n, k_object + 2), n),
           "exact_match": rate(k_object - 1, n), "parse_failure": rate(1, n), "parse_failure_by_how": {"empty": 1}}
    lik = {"acc": rate(k_acc, n), "acc_norm": rate(k_acc - 1, n), "photo_acc": rate(k_acc, n),
           "photo_acc_norm": rate(k_acc, n)}
    def wrong(d):
        return next(c.label for c in d.choices if c.label != d.answer)
    predictions = [{"dialog_id": d.dialog_id, "answer": d.answer, "parsed_label": d.answer if i < k_object else wrong(d),
                    "lik_label": d.answer if i < k_acc else wrong(d)} for i, d in enumerate(test)]
    if ids is not None:
        predictions = [{"dialog_id": i} for i in ids]
    return {"n": n, "generation": gen, "likelihood": lik,
            "permuted": {"shift": 1, "generation": {**gen, "object_acc": rate(k_object - 2, n)},
                         "likelihood": {**lik, "acc": rate(k_acc - 1, n)},
                         "changed": {"generation": rate(3, n), "acc": rate(2, n), "acc_norm": rate(2, n)}},
            "seconds": {"total": 1.0}, "predictions": predictions}


@pytest.fixture(scope="module")
def splits():
    items = validate_dialogues(make_toy_dialogues(80, seed=0))[0]
    return items[:40], items[40:]


def test_cells_hold_the_value_its_wilson_interval_and_the_seed_spread_as_numbers():
    one = rate_cell(rate(8, 10))
    assert one == {"value": 0.8, "lo": pytest.approx(0.490, abs=5e-4), "hi": pytest.approx(0.943, abs=5e-4), "n": 10}
    assert format_estimate(one) == "0.800 [0.490, 0.943]"
    assert rate_cell(None) is None
    two = seed_rate([rate(30, 40), rate(32, 40)])
    assert two["seeds"] == 2 and two["value"] == pytest.approx(0.775)
    assert two["sd"] == pytest.approx(0.0353553, abs=1e-6)
    lo, hi = rate(31, 40)["lo"], rate(31, 40)["hi"]
    assert rate_cell(two) == {"value": two["value"], "lo": lo, "hi": hi, "n": 40, "sd": two["sd"], "seeds": 2}
    assert format_estimate(rate_cell(two)) == f"0.775 ± 0.035 [{lo:.3f}, {hi:.3f}]"


def test_main_table_has_every_model_variant_then_the_baselines_with_object_and_photo_only(splits):
    train, test = splits
    runs = {"tiny-s": {"before": [fake_eval(test, 10)], "finetuned": [fake_eval(test, 30), fake_eval(test, 32)]}}
    tables = coref_tables(runs, train, test, {"tiny-s": []})
    main = next(iter(tables.values()))
    assert [(r["model"], r["variant"]) for r in main] == [
        ("tiny-s", "before"), ("tiny-s", "fine-tuned"), ("random label", "baseline"),
        ("best single letter on test", "baseline"), ("most recently mentioned object", "baseline"),
        ("first-mentioned object", "baseline"), ("most-mentioned object", "baseline")]
    assert main[0]["object acc"] == rate_cell(rate(10, 40)) and main[0]["seeds"] == 1
    assert main[1]["seeds"] == 2 and main[1]["object acc"]["seeds"] == 2 and main[1]["object acc"]["sd"] > 0
    assert format_estimate(main[1]["acc_norm (likelihood)"]).startswith("0.750 ± 0.035 [")
    for b in main[2:]:
        assert b["object acc"] and b["photo acc"]
        assert all(b[c] is None for c in ("exact match", "parse failures", "acc (likelihood)",
                                           "acc_norm (likelihood)"))
    bias = list(tables.values())[1]
    assert bias[0]["object acc rotated"] == rate_cell(rate(8, 40)) and bias[0]["shift"] == 1
    assert bias[0]["changed (generation)"] == rate_cell(rate(3, 40))


def test_beats_by_more_than_its_ci_only_when_the_intervals_are_apart(splits):
    assert beats_by_ci(rate(30, 40), rate(10, 40))
    assert not beats_by_ci(rate(12, 40), rate(10, 40))
    _, test = splits
    fixed = [{"baseline": "always B", "object_acc": rate(10, 40), "photo_acc": rate(20, 40)}]
    for k, want in ((30, "yes"), (12, "no")):
        rows = comparison_table({"m": {"finetuned": [fake_eval(test, k)]}}, fixed)
        assert [(r["baseline"], r["beats by more than its CI"]) for r in rows] == [("always B", want)]
        assert rows[0]["difference"] == pytest.approx((k - 10) / 40)
        assert rows[0]["verdict"] == "one seed: spread unknown"
    rows = comparison_table({"m": {"before": [fake_eval(test, 10)],
                                   "finetuned": [fake_eval(test, 30), fake_eval(test, 32)]}}, fixed)
    assert [r["baseline"] for r in rows] == ["always B", "m before fine-tuning"]
    assert all(r["verdict"] == "gain" and r["seeds"] == 2 for r in rows)


def _write(tmp_path, train, test, runs_dicts):
    (tmp_path / "train.json").write_text(dump_coref(train))
    (tmp_path / "val.json").write_text(dump_coref(validate_dialogues(make_toy_dialogues(40, seed=3))[0]))
    (tmp_path / "test.json").write_text(dump_coref(test))
    (tmp_path / "data_report.json").write_text(json.dumps({"source": "toy coref generator", "n_kept": 80,
                                                           "n_dropped": 0, "splits": {"train": 40, "test": 40}}))
    runs, metrics = {}, {}
    for model, variants in runs_dicts.items():
        runs[model] = {}
        for variant, evals in variants.items():
            runs[model][variant] = []
            for s, e in enumerate(evals):
                p = tmp_path / "coref" / model / variant / f"s{s}" / "test" / "eval.json"
                p.parent.mkdir(parents=True)
                p.write_text(json.dumps(e))
                runs[model][variant].append(str(p))
                if variant == "finetuned":
                    m = tmp_path / "coref" / model / variant / f"s{s}" / "train_metrics.json"
                    m.write_text(json.dumps({"steps": 12, "train_loss": 0.5, "chosen_epoch": 2.0,
                                             "val_loss_by_epoch": [{"epoch": 1.0, "val_loss": 0.7},
                                                                   {"epoch": 2.0, "val_loss": 0.6}],
                                             "train_seconds": 3.2, "world_size": 1, "n_train": 40,
                                             "config": {"seed": s}}))
                    metrics.setdefault(model, []).append(str(m))
    return runs, metrics


def test_build_table_writes_metrics_json_and_the_figure(tmp_path, splits):
    train, test = splits
    runs, metrics = _write(tmp_path, train, test, {
        "tiny-s": {"before": [fake_eval(test, 10)], "finetuned": [fake_eval(test, 30), fake_eval(test, 33)]},
        "tiny-m": {"before": [fake_eval(test, 11)], "finetuned": [fake_eval(test, 36), fake_eval(test, 35)]}})
    out = build_table(runs, str(tmp_path / "train.json"), str(tmp_path / "test.json"), metrics,
                      str(tmp_path / "data_report.json"), str(tmp_path / "metrics.json"), str(tmp_path / "acc.png"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(out))
    assert written["train_seeds"] == 2 and len(written["tables"]) == 4
    assert written["headline"]["tiny-s fine-tuned object acc"] == pytest.approx(31.5 / 40)
    assert written["headline"]["tiny-m fine-tuned object acc"] == pytest.approx(35.5 / 40)
    assert written["data"]["test dialogues"] == 40
    training = list(written["tables"].values())[2]
    assert [(r["model"], r["seed"], r["best val loss"]) for r in training] == [
        ("tiny-s", 0, 0.6), ("tiny-s", 1, 0.6), ("tiny-m", 0, 0.6), ("tiny-m", 1, 0.6)]
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(written["beats_every_baseline_by_ci"]) == {"tiny-s", "tiny-m"}
    assert written["positive_controls"][0]["claim"].startswith("tiny-s fine-tuned beats the strongest baseline")


def test_positive_controls_compare_with_the_strongest_baseline_per_kind_and_the_oracle(tmp_path, splits):
    train, test = splits
    runs, metrics = _write(tmp_path, train, test, {
        "tiny-s": {"before": [fake_eval(test, 10)], "finetuned": [fake_eval(test, 36), fake_eval(test, 38)]}})
    out = build_table(runs, str(tmp_path / "train.json"), str(tmp_path / "test.json"), metrics,
                      str(tmp_path / "data_report.json"), str(tmp_path / "metrics.json"), str(tmp_path / "acc.png"),
                      val_json=str(tmp_path / "val.json"), oracle=True)
    strongest = out["strongest_baseline"]
    assert out["baselines"][strongest]["kind"] != "oracle"
    assert out["baselines"][strongest]["object_acc"]["value"] == max(
        b["object_acc"]["value"] for b in out["baselines"].values() if b["kind"] != "oracle")
    assert "C" in out["baselines"]["shortcut logistic regression"]["chosen_on_val"]
    controls = {c["claim"]: c for c in out["positive_controls"]}
    main = controls[f"tiny-s fine-tuned beats the strongest baseline ({strongest})"]
    assert main["n_seeds"] == 2 and main["treatment_value"] == pytest.approx(37 / 40) and main["holds"]
    assert main["spread"] is not None and main["ci95"] > 0
    assert {"tiny-s fine-tuned above chance on praise dialogues",
            "tiny-s fine-tuned above chance on attribute dialogues"} <= set(controls)
    assert controls["the rule reader resolves every test dialogue (the toy's rule is exact)"]["holds"]
    kinds = next(rows for caption, rows in out["tables"].items() if caption.startswith("Object accuracy (generation) per"))
    assert {(r["model"], r["kind"]) for r in kinds} >= {("tiny-s", "praise"), ("tiny-s", "attribute")}
    assert all(isinstance(r["object acc"]["value"], float) and r["object acc"]["lo"] <= r["object acc"]["value"]
               <= r["object acc"]["hi"] for r in kinds)
    splits_table = next(rows for caption, rows in out["tables"].items() if caption.startswith("Shortcut baselines"))
    assert all(isinstance(r[s], float) for r in splits_table for s in ("train", "val"))
    assert all(r["test"]["n"] == len(test) and r["test"]["lo"] <= r["test"]["value"] <= r["test"]["hi"]
               for r in splits_table)
    chance = [c for c in out["headline_controls"]["tiny-s fine-tuned object acc"] if c["control"] == "random label"]
    assert chance[0]["value"] == pytest.approx(out["baselines"]["random label"]["object_acc"]["value"])


def test_an_eval_json_of_other_test_dialogues_is_an_error_naming_the_file_and_the_fix(tmp_path, splits):
    train, test = splits
    stale = fake_eval(test[:30], 20)  # scored before the split changed (or with coref.eval.limit)
    runs, metrics = _write(tmp_path, train, test, {"tiny-s": {"before": [fake_eval(test, 10)],
                                                              "finetuned": [stale]}})
    with pytest.raises(ValueError, match=r"finetuned/s0/test/eval\.json.*snakemake --forcerun eval_coref"):
        build_table(runs, str(tmp_path / "train.json"), str(tmp_path / "test.json"), metrics,
                    str(tmp_path / "data_report.json"), str(tmp_path / "metrics.json"), str(tmp_path / "acc.png"))
    assert not (tmp_path / "metrics.json").exists()


def test_main_table_without_models_still_lists_the_baselines(splits):
    fixed = [{"baseline": "always B", "object_acc": rate(10, 40), "photo_acc": rate(20, 40)}]
    assert [r["model"] for r in main_table({}, fixed)] == ["always B"]
