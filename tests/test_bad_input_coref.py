"""Bad input to the coref data step and CLI, one probe per test: lenient text mode counts every dropped block
(`n_items == n_kept + n_dropped`), the seed-format parser refuses what it used to keep (a byte-order mark in a
speaker, labels outside A-D, NULs and a second dialogue after the answer, an answer with no choices block), non-UTF-8
and deeply nested files are one clear error, `.TXT` is text, tiny inputs refuse an empty split, and the CLI ends
bad input (`{"epochs": "abc"}`, a missing model path, an unknown hub id offline) with one line and exit code 2.

    pytest tests/test_bad_input_coref.py -q
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmemory.coref import __main__ as cli
from mmemory.coref.data import PARSE_REASON, CorefError, SeedFormatError, parse_seed_text
from mmemory.coref.stage import CorefDataConfig, prepare_coref_data, read_source

from test_coref_data import ENGLISH_EXAMPLE, SEED_EXAMPLE, good_item

REPO = Path(__file__).resolve().parents[1]
SEP = "\n=====\n"


def _english(i: int) -> str:
    """The English example with its own words, so that blocks differ in content."""
    return ENGLISH_EXAMPLE.replace("I want that one.", f"I want that one, number {i}.")


def _prepare(tmp_path, path, strict=True, **kw):
    cfg = CorefDataConfig.from_dict({"source": "file", "path": str(path), "strict": strict, **kw})
    out = {s: str(tmp_path / "out" / f"{s}.json") for s in ("train", "val", "test")}
    return prepare_coref_data(cfg, out, str(tmp_path / "out" / "data_report.json"))


# ----------------------------------------------------------------------------------- lenient text: every drop counted

def test_lenient_text_mode_counts_each_unparseable_block(tmp_path):
    """The probe: 4 blocks with one unparseable gave n_items 3 and only a log warning."""
    blocks = [_english(i) for i in range(9)] + ["this is not a dialogue block"]
    path = tmp_path / "seed.txt"
    path.write_text(SEP.join(blocks))
    report = _prepare(tmp_path, path, strict=False, test_share=0.2, val_share_of_train=0.2)
    assert report["n_items"] == 10 and report["n_kept"] == 9 and report["n_dropped"] == 1
    assert report["dropped_by_reason"] == {PARSE_REASON: 1}
    assert report["n_items"] == report["n_kept"] + sum(report["dropped_by_reason"].values())
    assert "block 9" in report["problems"][0] and "seed.txt" in report["problems"][0]
    assert json.loads((tmp_path / "out" / "data_report.json").read_text())["n_dropped"] == 1


def test_trailing_garbage_after_the_answer_is_a_dropped_block_not_a_rationale(tmp_path):
    """The probe: a block with junk after the answer gave n_dropped 0 (the junk became the rationale)."""
    junk = _english(0).rstrip("\n") + "\n\x00\x00\x13garbage\x00\n"
    path = tmp_path / "seed.txt"
    path.write_text(SEP.join([junk] + [_english(i) for i in range(1, 10)]))
    report = _prepare(tmp_path, path, strict=False, test_share=0.2, val_share_of_train=0.2)
    assert report["n_dropped"] == 1 and report["dropped_by_reason"] == {PARSE_REASON: 1}
    assert "U+0000" in report["problems"][0]


def test_strict_text_mode_names_the_file_the_block_and_the_file_line(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_text(SEP.join([_english(0), "A: hello\nnonsense line"]))
    with pytest.raises(SeedFormatError) as e:
        read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))
    msg = str(e.value)
    n_first = _english(0).count("\n") + 3  # the second block starts after the first and the ===== line
    assert str(path) in msg and "block 1" in msg and f"line {n_first}" in msg and "Fix:" in msg


def test_nothing_valid_left_names_the_reasons(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_text(SEP.join(["junk one", "junk two"]))
    with pytest.raises(CorefError) as e:
        _prepare(tmp_path, path, strict=False)
    msg = str(e.value)
    assert "dropped: {}" not in msg and f"'{PARSE_REASON}': 2" in msg and "2 read" in msg


# ------------------------------------------------------------------------------------------ the parser, stricter

def test_a_byte_order_mark_is_not_part_of_the_first_speaker(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_bytes("\ufeff".encode() + SEED_EXAMPLE.encode())
    items, _, problems, _ = read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))
    assert not problems and items[0]["turns"][0]["speaker"] == "A"
    assert parse_seed_text("\ufeff" + SEED_EXAMPLE)["turns"][0]["speaker"] == "A"


CHOICES = ("A) A가 올린 사진 속 노트북\nB) A가 올린 사진 속 헤드폰\nC) B가 올린 사진 속 책\n"
           "D) B가 올린 사진 속 커피잔\n")
ANSWER = "정답: D) B가 올린 사진 속 커피잔"


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace("D) B가 올린 사진 속 커피잔\n\n정답", "E) B가 올린 사진 속 커피잔\n\n정답"),
     "option label E is not one of A to D"),
    (lambda t: t.replace(ANSWER, "정답: F"), "answer label F is not one of A to D"),
    (lambda t: t.replace("문제 풀이 과정:", "문제 풀이\x00 과정:"), "control character U+0000"),
    (lambda t: t + "\n선택지:\nA) A가 올린 사진 속 노트북\n정답: A\n", "a second answer line or choices header"),
    (lambda t: t.split("선택지:")[0] + ANSWER + "\n", "no choices block before it"),
    (lambda t: t.replace(CHOICES, ""), "the choices block lists no options"),
])
def test_the_seed_parser_refuses_what_it_used_to_keep(edit, needle):
    text = edit(SEED_EXAMPLE)
    assert text != SEED_EXAMPLE
    with pytest.raises(SeedFormatError) as e:
        parse_seed_text(text, dialog_id="seed-x")
    assert needle in str(e.value) and "seed-x" in str(e.value) and "Fix:" in str(e.value)


def test_a_5mb_bad_line_is_quoted_to_200_characters():
    text = SEED_EXAMPLE.replace('B: "그렇지!', "B - " + "x" * 5_000_000)
    with pytest.raises(SeedFormatError) as e:
        parse_seed_text(text, dialog_id="big")
    assert len(str(e.value)) < 1000 and "more characters" in str(e.value)


# ------------------------------------------------------------------------------------------ files and suffixes

def test_non_utf8_text_is_one_error_naming_file_line_and_fix(tmp_path):
    path = tmp_path / "seed.txt"
    path.write_bytes(SEED_EXAMPLE.encode("cp949"))
    with pytest.raises(CorefError, match=r"seed.txt:1: byte 0x.. at column \d+ is not UTF-8. Fix: re-save .*cp949"):
        read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))
    path.write_bytes(b"\xff" + SEED_EXAMPLE.encode())
    with pytest.raises(CorefError, match="byte 0xff at column 1"):
        read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))


def test_deeply_nested_json_is_one_error(tmp_path):
    path = tmp_path / "coref.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorefError, match="nested too deeply"):
        read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))


def test_an_upper_case_txt_suffix_is_text_and_an_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "SEED.TXT"
    path.write_text(SEED_EXAMPLE)
    items, _, _, _ = read_source(CorefDataConfig.from_dict({"source": "file", "path": str(path)}))
    assert items[0]["answer"] == "D"
    other = tmp_path / "seed.md"
    other.write_text(SEED_EXAMPLE)
    with pytest.raises(CorefError, match=r"suffix '.md' is neither .json .* nor .txt"):
        read_source(CorefDataConfig.from_dict({"source": "file", "path": str(other)}))


def test_tiny_input_refuses_an_empty_split_and_writes_nothing(tmp_path):
    path = tmp_path / "coref.json"
    path.write_text(json.dumps([good_item(f"d{i}") | {"turns": good_item()["turns"] + [
        {"speaker": "B", "text": f"line {i}"}]} for i in range(3)]))
    with pytest.raises(CorefError) as e:
        _prepare(tmp_path, path)
    msg = str(e.value)
    assert "split would be empty" in msg and "3 usable dialogues" in msg and "at least 7 distinct dialogues" in msg
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------------ the CLI

def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, lines
    assert lines[0].startswith("python -m mmemory.coref train: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _argv(tmp_path, model, config="{}", train=None):
    train = train or tmp_path / "train.json"
    if not Path(train).exists():
        Path(train).write_text(json.dumps([good_item()]))
    return ["train", "--model", str(model), "--train", str(train), "--out", str(tmp_path / "m"),
            "--checkpoints", str(tmp_path / "c"), "--config", config]


@pytest.mark.parametrize("config,needle", [
    ('{"epochs": "abc"}', "epochs is 'abc' (str), not float"),
    ('{"epochz": 3}', "unknown key(s) 'epochz'"),
    ('[1, 2]', "not an object"),
    ('{"epochs": ', "not valid JSON"),
])
def test_a_bad_config_is_one_line_and_exit_2(config, needle, tmp_path, capsys):
    assert cli.main(_argv(tmp_path, tmp_path, config)) == 2
    _one_line(capsys.readouterr().err, needle)


def test_a_missing_model_path_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "results" / "models" / "coref" / "nope"
    assert cli.main(_argv(tmp_path, missing)) == 2
    _one_line(capsys.readouterr().err, str(missing), "no such model directory", "Fix:")
    (tmp_path / "empty_model").mkdir()
    assert cli.main(_argv(tmp_path, tmp_path / "empty_model")) == 2
    _one_line(capsys.readouterr().err, "no config.json")
    assert not (tmp_path / "m").exists() and not (tmp_path / "c").exists()


def test_a_non_utf8_train_file_is_one_line_and_exit_2(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    train = tmp_path / "bad.json"
    train.write_bytes(b'[{"dialog_id": "caf\xe9"}]')
    assert cli.main(_argv(tmp_path, model, train=train)) == 2
    _one_line(capsys.readouterr().err, "bad.json:1: byte 0xe9", "UTF-8")


def test_an_unknown_hub_id_fails_offline_by_default_in_a_real_process(tmp_path):
    """No HF_HUB_OFFLINE in the environment: importing mmemory sets it, so the hub is never asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    r = subprocess.run([sys.executable, "-m", "mmemory.coref", *_argv(tmp_path, "someone/no-such-model")],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    _one_line(r.stderr, "someone/no-such-model", "HF_HUB_OFFLINE=1", "hf download someone/no-such-model")
