"""build_toy_models: tiny models saved with save_pretrained and loaded back by path with the Auto classes.
Run: pytest tests/test_toy_models.py"""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmemory.toy.models import ToySizes, build_toy_models


@pytest.fixture(scope="module")
def built(toy_root, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("models")
    out = {k: str(out_root / k) for k in ("tokenizer", "llm", "vlm", "clip")}
    sizes = ToySizes(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, vision_hidden_size=32,
                     image_size=48, vision_patch_size=8, mm_tokens_per_image=9)
    metrics = build_toy_models([str(toy_root / "visdial_1.0_train.json")], [], sizes, out, seed=0)
    return out, metrics, sizes


def test_tokenizer_round_trips_text_and_keeps_tags(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[0]["tokenizer"])
    text = "<reminder>we said the circle is red.</reminder> red"
    assert tok.decode(tok(text).input_ids) == text
    assert tok.pad_token and tok.eos_token and tok.bos_token


def test_tiny_llama_loads_by_path_and_generates(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[0]["llm"])
    model = AutoModelForCausalLM.from_pretrained(built[0]["llm"])
    ids = tok("how many shapes are there?", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.input_ids.shape[1]
    assert model.config.vocab_size == len(tok)


def test_tiny_gemma3_processor_and_chat_template(built, toy_root):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(built[0]["vlm"])
    model = AutoModelForImageTextToText.from_pretrained(built[0]["vlm"])
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color is it?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    assert text.startswith("<bos><start_of_turn>user\n<start_of_image>") and text.endswith("<start_of_turn>model\n")
    image = Image.open(next((toy_root / "images" / "train").glob("*.png")))
    inputs = proc(text=[text], images=[[image]], return_tensors="pt")
    n_image_tokens = (inputs.input_ids == model.config.image_token_id).sum().item()
    assert n_image_tokens == built[2].mm_tokens_per_image
    with torch.no_grad():
        loss = model(**inputs, labels=inputs.input_ids).loss
    assert torch.isfinite(loss)


def test_tiny_clip_embeds_images_and_text(built, toy_root):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(built[0]["clip"])
    ip = AutoImageProcessor.from_pretrained(built[0]["clip"])
    tok = AutoTokenizer.from_pretrained(built[0]["clip"])
    image = Image.open(next((toy_root / "images" / "train").glob("*.png")))
    with torch.no_grad():
        img = model.get_image_features(**ip(image, return_tensors="pt"))
        txt = model.get_text_features(**tok(["a red circle"], return_tensors="pt"))
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    assert img.shape == txt.shape == (1, 32)
    assert built[1]["clip_params"] > 0


def test_tiny_gemma3_answer_sees_the_start_of_a_long_prompt(built):
    """A memory block sits at the start of a ~300-token prompt and the answer at its end: the stand-in's last layer
    attends globally, as Gemma-3's global layers do (a 256-token sliding window everywhere hid the block)."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(built[0]["vlm"]).eval()
    assert model.config.text_config.layer_types[-1] == "full_attention"
    ids = torch.randint(20, model.config.text_config.vocab_size, (1, 400), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[0, 3] = (ids[0, 3] + 1 - 20) % (model.config.text_config.vocab_size - 20) + 20
    with torch.no_grad():
        a = model(input_ids=ids).logits[0, -1]
        b = model(input_ids=changed).logits[0, -1]
    assert not torch.allclose(a, b)


def test_tiny_gemma3_embeddings_have_unit_scale_as_in_gemma3(built):
    """Gemma-3 multiplies its embeddings by sqrt(hidden_size) and adds unit-RMS layer outputs to them; embeddings
    drawn at the weights' init std (RMS 0.16 after scaling, 64 wide) were drowned by the first layer, and the
    stand-in never learnt to copy from its context. They are drawn with std 1/sqrt(hidden_size) instead."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(built[0]["vlm"])
    emb = model.get_input_embeddings()
    scaled = emb(torch.arange(20, model.config.text_config.vocab_size)).float()  # Gemma-3's scaled embedding
    assert 0.8 < scaled.pow(2).mean().sqrt().item() < 1.2
    assert emb.weight[model.config.text_config.pad_token_id].abs().sum() == 0
    assert model.config.text_config.initializer_range == built[2].vlm_initializer_range


def test_pretraining_batches_label_exactly_the_answer_and_its_end_of_turn(built, toy_root):
    """The stand-in's pre-training batches (left-padded, with and without an image): the labels are the answer's
    tokens and `<end_of_turn>` and nothing else, as tokenising the prompt alone would mark them."""
    from transformers import AutoProcessor

    from mmemory.toy.pretrain_vlm import _batch, _messages

    proc = AutoProcessor.from_pretrained(built[0]["vlm"])
    proc.tokenizer.padding_side = "left"
    images = [Image.open(p) for p in sorted((toy_root / "images" / "train").glob("*.png"))[:2]]
    examples = [{"scene": 0, "text": "what color is the circle?", "answer": "red"},
                {"scene": None, "text": "earlier: a blue square at the top left. where was the square?",
                 "answer": "the square was at the top left"},
                {"scene": 1, "text": "describe the picture.", "answer": "a green triangle at the centre"}]
    batch = _batch(proc, examples, images, with_answer=True)
    for i, e in enumerate(examples):
        prompt = proc.apply_chat_template(_messages(e, False), add_generation_prompt=True, tokenize=False)
        alone = proc(text=[prompt], images=[[images[e["scene"]]]] if e["scene"] is not None else None,
                     return_tensors="pt", add_special_tokens=False)["input_ids"][0]
        row, labels = batch["input_ids"][i], batch["labels"][i]
        start = int((batch["attention_mask"][i] == 0).sum()) + len(alone)
        assert torch.equal(row[start - len(alone):start], alone)  # the prompt, then the answer
        assert (labels[:start] == -100).all() and torch.equal(labels[start:], row[start:])
        assert proc.tokenizer.decode(row[start:]) == e["answer"] + "<end_of_turn>\n"
    proc.tokenizer.padding_side = "right"
    with pytest.raises(ValueError, match="left-padded"):
        _batch(proc, examples, images, with_answer=True)
