"""The counting VLM: a tiny LLaVA for the embedded default, and one loading path shared with the paper's
`llava-hf/llava-1.5-7b-hf` (4-bit NF4 through bitsandbytes when asked).

`build_tiny_llava` writes a randomly initialised `LlavaForConditionalGeneration` (a `CLIPVisionConfig` tower, a
two-layer MLP projector and a `LlamaConfig` text model) with a `LlavaProcessor` (CLIP image processor + a byte-level
BPE tokenizer trained on the counting prompts and answers, with an `<image>` token) and the LLaVA-1.5 chat template
("USER: <image>\\n... ASSISTANT: ..."), all with `save_pretrained`, so that `LlavaForConditionalGeneration` and
`AutoProcessor.from_pretrained(dir)` load it exactly like the llava-hf checkpoint.

The question and answer wording lives here too (`QUESTION`, `answer_text`, `counting_corpus`): training rows,
prediction prompts and the toy tokenizer all take it from one place.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmemory.config import StrictConfig

logger = logging.getLogger(__name__)

QUESTION = "How many people are in this image?"  # the seed's question, asked of every frame
ANSWER = "There are {n} people."  # the answer template the adapter is trained to give (parsed by answers.parse_count)
IMAGE_TOKEN = "<image>"

# LLaVA-1.5's conversation format, as in llava-hf/llava-1.5-7b-hf: "<s>USER: <image>\n<question> ASSISTANT: <answer></s>"
# (BOS from the template: TRL tokenises with add_special_tokens=False).
# The {% generation %} markers let TRL's assistant_only_loss mask everything but the answer (its leading space, the
# text and </s>, so the model learns to stop); they render to nothing. The generation prompt ends at "ASSISTANT:",
# exactly where the trained span begins. The same template is set on the paper model's processor for
# training, so both models see one format.
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] + ' ' }}{%- endfor -%}"
    "{%- elif message['role'] == 'user' -%}"
    "{{ 'USER: ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for c in message['content'] if c['type'] == 'image' -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}"
    "{%- endif -%}{{ ' ' }}"
    "{%- else -%}"
    "{{ 'ASSISTANT:' }}"
    "{%- generation -%}"
    "{%- if message['content'] is string -%}{{ ' ' + message['content'] }}"
    "{%- else -%}{%- for c in message['content'] if c['type'] == 'text' -%}{{ ' ' + c['text'] }}{%- endfor -%}"
    "{%- endif -%}{{ eos_token }}"
    "{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


def answer_text(count: int) -> str:
    """The training answer for a frame with `count` people."""
    return ANSWER.format(n=int(count))


def user_message(question: str = QUESTION) -> dict:
    """The user turn: one image, then the question."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}


def counting_corpus(max_count: int = 100) -> list[str]:
    """What the toy tokenizer is trained on: the question, the answer for every count up to `max_count` (so that
    every count is one token) and the chat-template words."""
    answers = [" " + answer_text(n) for n in range(max_count + 1)]  # the template puts a space before the answer
    return [QUESTION, "USER:", "ASSISTANT:"] * 20 + answers * 20


@dataclass
class CountingToySize(StrictConfig):
    """Sizes of the tiny LLaVA (config counting.toy_model). The image is squashed to image_size x image_size (no
    crop: a crop would cut people out of the frame), giving (image_size / patch_size)^2 image tokens."""

    SECTION = "counting.toy_model"

    vocab_size: int = 512  # BPE vocabulary cap (byte alphabet + specials + merges: ~405 used; each count 0-100 one token)
    max_count: int = 100  # counts the tokenizer gives one token each ("There are 57 people.")
    hidden_size: int = 64  # text hidden width (multiples of 32: bitsandbytes' CPU 4-bit kernel)
    num_layers: int = 2  # text transformer layers
    num_heads: int = 4  # text attention heads
    vision_hidden_size: int = 64  # CLIP tower width
    vision_layers: int = 2  # CLIP tower layers
    vision_heads: int = 4  # CLIP tower attention heads
    image_size: int = 64  # input resolution (square)
    patch_size: int = 8  # pixels per patch side: (64 / 8)^2 = 64 image tokens
    initializer_range: float = 0.1  # std of the initial weights (0.02 leaves a random tiny LLaVA blind to the image:
    # measured, its count token stays at the marginal; 0.1 lets LoRA read counts)


def build_tokenizer(corpus: list[str], vocab_size: int, out_dir: str | Path):
    """The toy BPE tokenizer (`mmemory.toy.models.train_tokenizer`) with an `<image>` special token as the processor's
    image token, and the LLaVA chat template."""
    from transformers import PreTrainedTokenizerFast

    from mmemory.toy.models import BOS, EOS, PAD, UNK, train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        base = train_tokenizer(corpus, vocab_size, tmp)
    backend = base.backend_tokenizer
    backend.add_special_tokens([IMAGE_TOKEN])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN}, chat_template=LLAVA_CHAT_TEMPLATE,
        model_max_length=4096, padding_side="left",
    )
    tok.save_pretrained(out_dir)
    return tok


def build_tiny_llava(out_dir: str | Path, sizes: CountingToySize | None = None, seed: int = 0,
                     corpus: list[str] | None = None) -> dict:
    """Write a random tiny `LlavaForConditionalGeneration` + `LlavaProcessor` to `out_dir`; returns its figures."""
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    sizes = sizes or CountingToySize()
    if sizes.image_size % sizes.patch_size:
        raise ValueError(f"counting.toy_model: image_size {sizes.image_size} is not a multiple of patch_size "
                         f"{sizes.patch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(corpus or counting_corpus(sizes.max_count), sizes.vocab_size, out_dir)
    torch.manual_seed(seed)
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=sizes.hidden_size, intermediate_size=4 * sizes.hidden_size,
        num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads,
        num_key_value_heads=max(1, sizes.num_heads // 2), max_position_embeddings=512,
        initializer_range=sizes.initializer_range, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    vision = CLIPVisionConfig(
        hidden_size=sizes.vision_hidden_size, intermediate_size=4 * sizes.vision_hidden_size,
        num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
        image_size=sizes.image_size, patch_size=sizes.patch_size, projection_dim=sizes.hidden_size,
        initializer_range=sizes.initializer_range,
    )
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id, projector_hidden_act="gelu",
        # a two-layer tower: read its last layer (llava-1.5 reads the penultimate of 24); drop CLIP's CLS token
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        image_seq_length=(sizes.image_size // sizes.patch_size) ** 2, pad_token_id=tok.pad_token_id,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    image_processor = CLIPImageProcessorPil(
        size={"height": sizes.image_size, "width": sizes.image_size}, do_center_crop=False,
        crop_size={"height": sizes.image_size, "width": sizes.image_size},
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=sizes.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n = model.num_parameters()
    logger.info("tiny LLaVA: %.2fM parameters, %d image tokens -> %s", n / 1e6, config.image_seq_length, out_dir)
    return {"params": n, "vocab": len(tok), "image_tokens": config.image_seq_length}


def load_counting_model(path: str, load_in_4bit: bool = False, dtype: str = "auto", device: str | None = None,
                        for_training: bool = False, gradient_checkpointing: bool = False):
    """(model, processor) by path: the tiny LLaVA or llava-hf/llava-1.5-7b-hf (a local copy). `load_in_4bit`: NF4
    weights with double quantisation and `dtype` compute (bitsandbytes; QLoRA), prepared for k-bit training when
    `for_training`. `dtype` "auto" (`mmemory.precision.resolve_dtype`): with 4-bit, the compute dtype is bfloat16 on
    a GPU of compute capability >= 8.0, float16 on an older one (a 2080 Ti emulates bfloat16) and bfloat16 on the
    CPU (bitsandbytes runs it there); without 4-bit the weights stay float32 (the Trainer's mixed precision casts)."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from mmemory.precision import resolve_dtype

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto" and not load_in_4bit:
        dtype = "float32"
    dtype = resolve_dtype(dtype, device, cpu="bfloat16", what="counting dtype")
    torch_dtype = getattr(torch, dtype)
    kwargs: dict = {"dtype": torch_dtype}
    if load_in_4bit:
        import importlib.util

        from transformers import BitsAndBytesConfig

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError("counting load_in_4bit needs bitsandbytes; install it (requirements.txt, "
                              "envs/counting.yaml) or set counting.train.load_in_4bit: false")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
            # the projector and the output layer stay in full precision (they may be trained fully:
            # modules_to_save); a regex, since transformers matches these names from the start or as a suffix
            llm_int8_skip_modules=[r".*multi_modal_projector", "lm_head"],
        )
        kwargs["device_map"] = {"": device}
    from mmemory.hub import check_model

    check_model(path, "counting.model")  # a missing path or an uncached hub id offline: one clear error
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = LlavaForConditionalGeneration.from_pretrained(path, **kwargs)
    except OSError as e:
        raise FileNotFoundError(f"cannot load the counting VLM from {path!r} ({e}); set config counting.model to a "
                                "local checkpoint directory (paper: llava-hf/llava-1.5-7b-hf, downloaded)") from e
    if load_in_4bit and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif not load_in_4bit:
        model = model.to(device)
    logger.info("counting VLM %s loaded (%s, %.1fM params)", path, "4-bit NF4" if load_in_4bit else dtype,
                model.num_parameters() / 1e6)
    return model, processor
