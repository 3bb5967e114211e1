"""The palette-free classical counter (mmemory.counting.classical): its line is fitted on train, its settings are
chosen on val (never test), and the counting table names the head-colour counter an oracle and fills
positive_controls. Run: pytest tests/test_counting_classical.py"""
import csv
import json

import numpy as np
import pytest

from mmemory.counting import classical
from mmemory.counting.classical import fit_blob_counter
from mmemory.counting.stage import BLOBS, ORACLE, build_table
from mmemory.counting.toy import make_toy_counting


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rows = make_toy_counting(root, n=48, seed=3, max_count=8)
    items = [{"id": i, "count": c, "image": str(root / "frames" / f"seq_{i:06d}.jpg")} for i, c in rows]
    return items[:28], items[28:38], items[38:]


def test_settings_are_chosen_on_val_and_the_line_fitted_on_train(frames, monkeypatch):
    monkeypatch.setattr(classical, "SIGMAS", (1.0, 3.0))
    monkeypatch.setattr(classical, "THRESHOLDS", (4.0, 35.0))
    train, val, _ = frames
    c = fit_blob_counter(train, val)
    assert set(c.val_mae) == {f"sigma={s:g} threshold={t:g}" for s in (1.0, 3.0) for t in (4.0, 35.0)}
    assert c.val_mae[f"sigma={c.sigma:g} threshold={c.threshold:g}"] == min(c.val_mae.values())
    assert (c.n_train, c.n_val) == (len(train), len(val))
    # the line is the train least-squares fit at the chosen setting
    blobs = classical._blob_table(train)[(c.sigma, c.threshold)]
    a, b = np.polyfit(blobs, [it["count"] for it in train], 1)
    assert (c.a, c.b) == pytest.approx((a, b))
    # val decides: val counts made equal to one other setting's predictions choose that setting
    tr, va = classical._blob_table(train), classical._blob_table(val)
    other = next(k for k in tr if k != (c.sigma, c.threshold)
                 and not np.array_equal(classical._apply(va[k], *classical._line(tr[k], [it["count"] for it in train])),
                                        classical._apply(va[(c.sigma, c.threshold)], c.a, c.b)))
    rigged = [{**it, "count": int(p)} for it, p in
              zip(val, classical._apply(va[other], *classical._line(tr[other], [it["count"] for it in train])))]
    assert (fit_blob_counter(train, rigged).sigma, fit_blob_counter(train, rigged).threshold) == other
    assert all(isinstance(n, int) and n >= 0 for n in c.predict(val))


def test_the_table_names_the_oracle_and_fills_positive_controls(frames, tmp_path, monkeypatch):
    monkeypatch.setattr(classical, "SIGMAS", (2.0,))
    monkeypatch.setattr(classical, "THRESHOLDS", (25.0, 35.0))
    train, val, test = frames
    paths = {}
    for name, items in (("train", train), ("val", val), ("test", test)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(items))
    runs = {}
    for variant, seeds in (("before", [0]), ("finetuned", [0, 1])):
        runs[variant] = []
        for s in seeds:
            p = tmp_path / variant / f"s{s}.json"
            p.parent.mkdir(exist_ok=True)
            off = 5 if variant == "before" else s  # the fine-tuned seeds are right or one off
            p.write_text(json.dumps([{"id": t["id"], "count_true": t["count"], "answer": "",
                                      "count_pred": t["count"] + off} for t in test]))
            runs[variant].append(str(p))
    (tmp_path / "report.json").write_text(json.dumps({"source": "toy"}))
    tm = tmp_path / "tm.json"
    tm.write_text(json.dumps({"train_loss": 1.0}))
    out = build_table(runs, str(paths["train"]), str(paths["test"]), [str(tm), str(tm)], str(tmp_path / "report.json"),
                      True, [], str(tmp_path / "m.json"), str(tmp_path / "s.png"), str(tmp_path / "b.png"),
                      val_json=str(paths["val"]))
    main = next(iter(out["tables"].values()))
    methods = [r["method"] for r in main]
    assert ORACLE in methods and BLOBS in methods and "classical head counter" not in methods
    assert out["classical_counter"]["sigma"] == 2.0 and out["classical_counter"]["val_frames"] == len(val)
    claims = {c["claim"]: c for c in out["positive_controls"]}
    vs_mean = claims["fine-tuned VLM has a lower MAE than the train mean"]
    assert vs_mean["n_seeds"] == 2 and vs_mean["treatment"] == "fine-tuned VLM"
    assert vs_mean["treatment_value"] == pytest.approx(0.5)  # MAE 0 and 1
    # lower is better: the difference is the MAE the fine-tuned VLM saves over the train mean
    assert vs_mean["lower_is_better"] and vs_mean["difference"] == pytest.approx(vs_mean["control_value"] - 0.5)
    ceiling = claims["the oracle head counter errs no more than the fine-tuned VLM (a ceiling)"]
    assert ceiling["treatment"] == ORACLE and ceiling["relation"] == "at_least"
    assert "fine-tuned VLM has a lower MAE than the palette-free classical counter" in claims
    assert json.loads((tmp_path / "m.json").read_text())["positive_controls"] == json.loads(
        json.dumps(out["positive_controls"]))
