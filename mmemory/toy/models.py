"""`build_toy_models`: the tiny, offline stand-ins for the paper's models, written with `save_pretrained`.

- a byte-level BPE tokenizer trained with `tokenizers` on the toy corpus (captions, questions, answers, prompts);
- a tiny Llama (`LlamaForCausalLM`), the causal LM behind the EMR bridge (paper: Llama-3.2-1B);
- a tiny Gemma-3 (`Gemma3ForConditionalGeneration`) with a `Gemma3Processor` and a Gemma-style chat template
  (paper: gemma-3-4b-it);
- a tiny CLIP (`CLIPModel`) with its image processor and the same tokenizer (the emr stage trains it).

Later rules load each of them by path with `from_pretrained`, exactly as they load real checkpoints.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from mmemory.config import StrictConfig
from mmemory.toy.visdial import ToyVisDialConfig

logger = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
START_TURN, END_TURN = "<start_of_turn>", "<end_of_turn>"
BOI, IMAGE, EOI = "<start_of_image>", "<image_soft_token>", "<end_of_image>"

# Gemma-3's chat format: <bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n...
# An image item renders as <start_of_image>; the processor expands it to the soft image tokens.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + ('user' if role == 'system' else role) + '\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass
class ToySizes(StrictConfig):
    """Sizes of the tiny models: config models.toy (defaults: config.yaml's). `image_size` is data.toy's, set by the
    workflow."""

    SECTION = "models.toy"

    vocab_size: int = 1024  # BPE vocabulary size
    hidden_size: int = 64  # text hidden width
    num_layers: int = 2  # transformer layers per model
    num_heads: int = 4  # attention heads
    vision_hidden_size: int = 64  # vision tower width
    vision_patch_size: int = 8  # pixels per patch side
    mm_tokens_per_image: int = 16  # Gemma-3 soft tokens per image (square)
    image_size: int = ToyVisDialConfig.image_size  # input resolution of the vision towers (data.toy.image_size)
    vlm_initializer_range: float = 0.02  # std of the tiny Gemma-3's initial weights (its embeddings: below)


def train_tokenizer(corpus: Iterable[str], vocab_size: int, out_dir: str | Path):
    """Train a byte-level BPE tokenizer on `corpus` and save it as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, UNK, START_TURN, END_TURN, BOI, IMAGE, EOI]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        extra_special_tokens={"boi_token": BOI, "image_token": IMAGE, "eoi_token": EOI,
                              "start_of_turn": START_TURN, "end_of_turn": END_TURN},
        chat_template=GEMMA_CHAT_TEMPLATE, model_max_length=1024, padding_side="left",
    )
    fast.save_pretrained(out_dir)
    logger.info("tokenizer: %d tokens -> %s", len(fast), out_dir)
    return fast


def build_tiny_llama(tokenizer, sizes: ToySizes, out_dir: str | Path, seed: int = 0):
    """A randomly initialised `LlamaForCausalLM` with the toy tokenizer's vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.hidden_size, intermediate_size=4 * sizes.hidden_size,
        num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads,
        num_key_value_heads=max(1, sizes.num_heads // 2), max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info("tiny Llama: %.2fM parameters -> %s", model.num_parameters() / 1e6, out_dir)
    return model


def build_tiny_gemma3(tokenizer, sizes: ToySizes, out_dir: str | Path, seed: int = 0):
    """A randomly initialised `Gemma3ForConditionalGeneration` (SigLIP tower + Gemma-3 text) and its processor."""
    from transformers import (Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil,
                              Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig)

    patches = sizes.image_size // sizes.vision_patch_size
    side = int(round(sizes.mm_tokens_per_image ** 0.5))
    if side * side != sizes.mm_tokens_per_image or patches % side:
        raise ValueError(
            f"models.toy.mm_tokens_per_image={sizes.mm_tokens_per_image} must be a square whose side divides "
            f"image_size / vision_patch_size = {patches}"
        )
    torch.manual_seed(seed)
    head_dim = sizes.hidden_size // sizes.num_heads
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=sizes.hidden_size, intermediate_size=4 * sizes.hidden_size,
        num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads,
        num_key_value_heads=max(1, sizes.num_heads // 2), head_dim=head_dim, max_position_embeddings=1024,
        # Gemma-3 closes each run of sliding-window layers with a global one; with two layers the default pattern
        # (one global in six) left both local, and a 256-token window cannot reach a memory block at the start of a
        # ~300-token prompt from the answer at its end (the memory variants scored as if they had no memory)
        sliding_window=256, layer_types=["sliding_attention"] * (sizes.num_layers - 1) + ["full_attention"],
        query_pre_attn_scalar=head_dim, initializer_range=sizes.vlm_initializer_range,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = SiglipVisionConfig(
        hidden_size=sizes.vision_hidden_size, intermediate_size=4 * sizes.vision_hidden_size,
        num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads, image_size=sizes.image_size,
        patch_size=sizes.vision_patch_size, vision_use_head=False,
    )
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=sizes.mm_tokens_per_image,
        boi_token_index=tokenizer.convert_tokens_to_ids(BOI), eoi_token_index=tokenizer.convert_tokens_to_ids(EOI),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=[tokenizer.eos_token_id,
                                                           tokenizer.convert_tokens_to_ids(END_TURN)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Gemma3ForConditionalGeneration(config)
    # Gemma-3 multiplies its embeddings by sqrt(hidden_size), and its sandwich norms give every attention and MLP
    # output unit RMS before it is added to the residual stream, so embeddings belong at unit RMS after that
    # factor. At the config's init std and 64 wide they had RMS 0.16 (0.02 x 8), so each layer's output
    # drowned the token's identity, and the stand-in never learnt to copy from its context (random-span copy loss
    # 5.2 nats after 4,000 steps, against 0.08 after 3,000 with this init). Embeddings drawn with std
    # 1/sqrt(hidden_size) give the scaled embeddings unit RMS, the scale of the layer outputs added to them.
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, sizes.hidden_size ** -0.5)
        model.get_input_embeddings().weight[tokenizer.pad_token_id].zero_()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Gemma3ImageProcessorPil(
        size={"height": sizes.image_size, "width": sizes.image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=GEMMA_CHAT_TEMPLATE, image_seq_length=sizes.mm_tokens_per_image)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.info("tiny Gemma-3: %.2fM parameters -> %s", model.num_parameters() / 1e6, out_dir)
    return model, processor


def build_tiny_clip(tokenizer, sizes: ToySizes, out_dir: str | Path, seed: int = 0):
    """A randomly initialised `CLIPModel` with a CLIP image processor and the toy tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=sizes.hidden_size, intermediate_size=4 * sizes.hidden_size,
            num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads, max_position_embeddings=64,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=CLIPVisionConfig(
            hidden_size=sizes.vision_hidden_size, intermediate_size=4 * sizes.vision_hidden_size,
            num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads,
            image_size=sizes.image_size, patch_size=sizes.vision_patch_size,
        ),
        projection_dim=sizes.hidden_size,
    )
    model = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": sizes.image_size}, crop_size={"height": sizes.image_size, "width": sizes.image_size},
    )
    model.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logger.info("tiny CLIP: %.2fM parameters -> %s", model.num_parameters() / 1e6, out_dir)
    return model


def toy_corpus(visdial_jsons: Iterable[str | Path], extra_files: Iterable[str | Path] = ()) -> list[str]:
    """Captions, questions, answers and prompt text: what the toy tokenizer is trained on."""
    import json

    texts: list[str] = []
    for path in visdial_jsons:
        data = json.loads(Path(path).read_text())["data"]
        texts += data["questions"] + data["answers"] + [d["caption"] for d in data["dialogs"]]
    for path in extra_files:
        texts += Path(path).read_text().splitlines()
    return [t for t in texts if t.strip()]


def build_toy_models(visdial_jsons: list[str], extra_text_files: list[str], sizes: ToySizes, out: dict[str, str],
                     seed: int = 0) -> dict:
    """Build every tiny model; `out` maps tokenizer/llm/vlm/clip to output directories."""
    tok = train_tokenizer(toy_corpus(visdial_jsons, extra_text_files), sizes.vocab_size, out["tokenizer"])
    llama = build_tiny_llama(tok, sizes, out["llm"], seed)
    gemma, _ = build_tiny_gemma3(tok, sizes, out["vlm"], seed)
    clip = build_tiny_clip(tok, sizes, out["clip"], seed)
    return {
        "tokenizer_vocab": len(tok),
        "llm_params": llama.num_parameters(),
        "vlm_params": gemma.num_parameters(),
        "clip_params": clip.num_parameters(),
    }
