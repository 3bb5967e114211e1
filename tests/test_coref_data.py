"""coref data layer: the schema checked on load, seed 002's text format, every bad-item case in strict and lenient
mode, and train/val/test splits disjoint by content.  Run: pytest tests/test_coref_data.py"""
from __future__ import annotations

import copy
import json

import pytest

from mmemory.coref.data import (FIXES, REASONS, CorefError, SeedFormatError, content_key, dump_coref, load_coref,
                                parse_seed_text, shared_content, split_dialogues, validate_dialogues)
from mmemory.coref.toy import make_toy_dialogues

# The example block of seed 002 (the user's own spec text), verbatim.
SEED_EXAMPLE = """\
A: "내가 요즘 집에서 일할 때 찍은 사진을 올릴게."
(사진 1: 책상 위에 노트북과 헤드폰이 놓여있는 사진)

B: "오, 집에서 일할 때 저런 세팅이 편하겠다! 나도 방금 찍은 사진 하나 올릴게."
(사진 2: 소파 위에 책과 커피잔이 놓여있는 사진)

A: "응, 노트북이 있어서 일하기 편해. 헤드폰도 집중할 때 정말 유용해."

B: "나도 책 읽을 때 커피 한 잔이면 더 집중이 잘 되는 것 같아."

A: "맞아, 커피 한 잔이면 에너지도 충전되고 더 오래 일할 수 있지."

B: "그렇지! 이 분위기에서 책을 읽으면 정말 힐링이야."

A: "나도 그런 여유를 즐기고 싶어. 특히 저거 보니까 딱 그런 느낌이 들더라."

선택지:
A) A가 올린 사진 속 노트북
B) A가 올린 사진 속 헤드폰
C) B가 올린 사진 속 책
D) B가 올린 사진 속 커피잔

정답: D) B가 올린 사진 속 커피잔

--------------------------------
문제 풀이 과정:

정답에 대한 이유: A는 마지막 발화에서 '저거'라고 말하며 B의 사진에 대한 언급을 하고 있습니다. B는 사진 속에서 책과 커피잔을 소개했지만, 이전 발화에서 커피 한 잔을 강조하며 집중에 도움이 된다고 말했습니다. 마지막으로 A가 '저거'라고 한 것은 B가 커피와 관련된 이야기를 했을 때 자연스럽게 연결되는 커피잔입니다.

정답이 아닌 것에 대한 이유:

A의 노트북: A가 올린 사진이지만, '저거'라는 표현은 자신의 물건을 지칭하는 데 적합하지 않으며, 앞서 커피에 대한 대화가 이어졌습니다.
A의 헤드폰: 이 역시 A의 물건이며 대명사 '저거'로 지칭하기에 부자연스럽습니다.
B의 책: B의 사진 속 물건이긴 하지만, 대화 흐름상 커피에 집중하는 대화가 이어졌으므로 '저거'는 책보다는 커피잔을 가리킬 가능성이 더 큽니다.
"""

ENGLISH_EXAMPLE = """\
A: "Here is my desk at home."
(photo 1: a laptop and headphones on a desk)
B: "Nice. Here is my sofa."
(photo 2: a book and a coffee cup on a sofa)
B: "Coffee keeps me going."
A: "I want that one."

Choices:
A) the laptop in A's photo
B) the headphones in A's photo
C) the book in B's photo
D) the coffee cup in photo 2

Answer: D) the coffee cup in photo 2
"""


def good_item(dialog_id="d0") -> dict:
    return {"dialog_id": dialog_id,
            "turns": [{"speaker": "A", "text": "look"},
                      {"speaker": "A", "photo": {"photo_id": "1", "caption": "a mug and a lamp", "objects": ["mug", "lamp"]}},
                      {"speaker": "B", "photo": {"photo_id": "2", "caption": "a book and a vase", "objects": ["book", "vase"]}},
                      {"speaker": "A", "text": "that one"}],
            "choices": [{"label": "A", "photo_id": "1", "object": "mug", "text": "the mug in A's photo"},
                        {"label": "B", "photo_id": "1", "object": "lamp", "text": "the lamp in A's photo"},
                        {"label": "C", "photo_id": "2", "object": "book", "text": "the book in B's photo"},
                        {"label": "D", "photo_id": "2", "object": "vase", "text": "the vase in B's photo"}],
            "answer": "C"}


def _set(path, value):
    def edit(item):
        node = item
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return item
    return edit


def _del(key):
    def edit(item):
        del item[key]
        return item
    return edit


# one edit per reason (choices, answer and turns first): good_item turned into an item dropped for that reason
BAD = {
    "no choices": _set(["choices"], []),
    "not four choices": lambda it: {**it, "choices": it["choices"][:3]},
    "duplicate labels": _set(["choices", 3, "label"], "A"),
    "answer not a label": _set(["answer"], "the book in B's photo"),
    "choice names a photo that never appears": _set(["choices", 0, "photo_id"], "7"),
    "empty dialogue": _set(["turns"], []),
    "dialogue not an object": lambda it: ["not", "a", "dialogue"],
    "duplicate dialog_id": _set(["dialog_id"], "ok-0"),
    "missing or mistyped field": _del("answer"),
    "bad turn": _set(["turns", 0], {"speaker": "A", "txt": "typo"}),
    "duplicate photo_id": _set(["turns", 2, "photo", "photo_id"], "1"),
    "bad choice": _set(["choices", 1], {"label": "B", "photo_id": "1", "object": "lamp"}),
    "choice names an object not in its photo": _set(["choices", 0, "object"], "kettle"),
}


def test_every_reason_has_a_case_and_a_fix():
    assert set(BAD) == set(REASONS) == set(FIXES)


def test_seed_example_parses_into_the_schema():
    item = parse_seed_text(SEED_EXAMPLE, dialog_id="seed-002")
    (d,), report = validate_dialogues([item], strict=True)
    assert report.n_kept == 1 and not report.problems
    assert [t.speaker for t in d.turns] == ["A", "A", "B", "B", "A", "B", "A", "B", "A"]
    assert d.turns[0].text == "내가 요즘 집에서 일할 때 찍은 사진을 올릴게."
    assert d.turns[-1].text == "나도 그런 여유를 즐기고 싶어. 특히 저거 보니까 딱 그런 느낌이 들더라."
    assert d.photos["1"][0] == "A" and d.photos["1"][1].caption == "책상 위에 노트북과 헤드폰이 놓여있는 사진"
    assert d.photos["2"][0] == "B" and d.photos["2"][1].objects == ["책", "커피잔"]
    assert [(c.label, c.photo_id, c.object) for c in d.choices] == [
        ("A", "1", "노트북"), ("B", "1", "헤드폰"), ("C", "2", "책"), ("D", "2", "커피잔")]
    assert d.choices[3].text == "B가 올린 사진 속 커피잔"
    assert d.answer == "D" and d.answer_choice.object == "커피잔"
    assert d.rationale.startswith("문제 풀이 과정:") and d.rationale.endswith("가능성이 더 큽니다.")
    # every line of the seed's text survives untouched somewhere in the parsed item
    dumped = dump_coref([d])
    for line in SEED_EXAMPLE.splitlines():
        body = line.strip().strip('"')
        if body and not body.startswith("---") and body not in ("선택지:",):
            core = body.split(": ", 1)[-1].split(") ", 1)[-1].strip('"').rstrip(")")
            assert core in dumped, line


def test_korean_round_trips_through_a_file(tmp_path):
    item = parse_seed_text(SEED_EXAMPLE, dialog_id="seed-002")
    path = tmp_path / "coref.json"
    path.write_text(dump_coref([item]), encoding="utf-8")
    assert "저거" in path.read_text(encoding="utf-8")  # written as text, not \\u escapes
    (d,), _ = load_coref(path, strict=True)
    assert d.to_dict() == item
    assert json.loads(dump_coref([d])) == [item]


def test_english_seed_format_and_photo_numbers():
    item = parse_seed_text(ENGLISH_EXAMPLE, dialog_id=7)
    (d,), _ = validate_dialogues([item])
    assert d.dialog_id == 7 and d.answer == "D" and d.rationale is None
    assert [(c.photo_id, c.object) for c in d.choices] == [
        ("1", "laptop"), ("1", "headphones"), ("2", "book"), ("2", "coffee cup")]
    assert d.turns[1].photo.caption == "a laptop and headphones on a desk"


@pytest.mark.parametrize("text, needle", [
    (SEED_EXAMPLE.replace("정답: D) B가 올린 사진 속 커피잔", ""), "no answer line"),
    (SEED_EXAMPLE.replace("정답: D) B가 올린 사진 속 커피잔", "정답: D) B가 올린 사진 속 책"), "make them agree"),
    ("(사진 1: 책상)\n" + SEED_EXAMPLE, "before any utterance"),
    (SEED_EXAMPLE.replace("C) B가 올린 사진 속 책", "C) 아무거나"), "names no photo"),
    (SEED_EXAMPLE.replace('B: "그렇지!', 'B - "그렇지!'), "not a line the format allows"),
])
def test_seed_format_errors_name_the_dialogue_and_fix(text, needle):
    with pytest.raises(SeedFormatError, match="seed-x") as e:
        parse_seed_text(text, dialog_id="seed-x")
    assert needle in str(e.value) and "Fix:" in str(e.value)


def test_a_choice_naming_a_speaker_without_a_photo_is_reported_not_guessed():
    text = SEED_EXAMPLE.replace("C) B가 올린 사진 속 책", "C) C가 올린 사진 속 책")
    item = parse_seed_text(text, dialog_id="seed-x")
    kept, report = validate_dialogues([item], strict=False)
    assert not kept and report.dropped_by_reason == {"choice names a photo that never appears": 1}


@pytest.mark.parametrize("reason", REASONS)
def test_bad_item_strict_names_dialogue_and_fix(reason):
    bad = BAD[reason](copy.deepcopy(good_item("bad-1")))
    with pytest.raises(CorefError) as e:
        validate_dialogues([good_item("ok-0"), bad], strict=True, source="coref.json")
    msg = str(e.value)
    assert "coref.json" in msg and "item 1" in msg and FIXES[reason] in msg
    if isinstance(bad, dict) and "dialog_id" in bad:
        assert repr(bad["dialog_id"]) in msg


@pytest.mark.parametrize("reason", REASONS)
def test_bad_item_lenient_is_counted_by_reason(reason):
    bad = BAD[reason](copy.deepcopy(good_item("bad-1")))
    kept, report = validate_dialogues([good_item("ok-0"), bad, good_item("ok-2")], strict=False)
    assert [d.dialog_id for d in kept] == ["ok-0", "ok-2"]
    assert report.dropped_by_reason == {reason: 1}
    out = report.to_json()
    assert out["n_items"] == 3 and out["n_kept"] == 2 and out["n_dropped"] == 1
    assert json.loads(json.dumps(out))["dropped_by_reason"] == {reason: 1}


def test_duplicate_dialog_id_and_not_a_list(tmp_path):
    kept, report = validate_dialogues([good_item("x"), good_item("x")], strict=False)
    assert len(kept) == 1 and report.dropped_by_reason == {"duplicate dialog_id": 1}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dialogues": []}))
    with pytest.raises(CorefError, match="not a JSON list"):
        load_coref(path, strict=False)
    path.write_text("[{")
    with pytest.raises(CorefError, match="not valid JSON"):
        load_coref(path)


def test_photo_without_listed_objects_accepts_any_object():
    item = good_item()
    item["turns"][1]["photo"]["objects"] = []
    kept, _ = validate_dialogues([item], strict=True)
    assert kept[0].photos["1"][1].objects == []


def test_split_is_seeded_sized_and_disjoint_by_content():
    items = make_toy_dialogues(300, seed=3)
    # plant copies: the same dialogue text under new ids must land in one split with its original
    copies = [{**copy.deepcopy(items[i]), "dialog_id": f"copy-{i}"} for i in range(0, 300, 10)]
    dialogues, _ = validate_dialogues(items + copies)
    splits = split_dialogues(dialogues, test_share=0.2, val_share_of_train=0.1, seed=0)
    n = len(dialogues)
    assert sum(len(v) for v in splits.values()) == n
    assert abs(len(splits["test"]) - 0.2 * n) <= 2 and abs(len(splits["val"]) - 0.08 * n) <= 2
    texts = {name: {json.dumps([t.to_dict() for t in d.turns], ensure_ascii=False) for d in ds}
             for name, ds in splits.items()}
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"] and not texts["val"] & texts["test"]
    assert shared_content(splits) == []
    again = split_dialogues(dialogues, seed=0)
    assert {k: [d.dialog_id for d in v] for k, v in again.items()} == {k: [d.dialog_id for d in v]
                                                                        for k, v in splits.items()}
    other = split_dialogues(dialogues, seed=1)
    assert {d.dialog_id for d in other["test"]} != {d.dialog_id for d in splits["test"]}


def test_shared_content_finds_a_leak():
    a, b = validate_dialogues([good_item("a"), {**good_item("b")}])[0]
    assert content_key(a) == content_key(b)
    assert shared_content({"train": [a], "test": [b]}) == [(content_key(a), "train", "test")]
