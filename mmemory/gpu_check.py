"""The GPU check: every CUDA code path of the paper preset, once, at tiny width with random weights built offline
(like the toy models), before you book GPU hours. On one GPU it finishes within 10 minutes (--timeout).

    python -m mmemory.gpu_check                       # every check this env can run; one line each, then a summary
    python -m mmemory.gpu_check --only ddp,zero3      # some checks (names below)
    python -m mmemory.gpu_check --list                # what would run here and what it would select (no GPU needed)

Without CUDA it stops at once with one line (exit code 2). Each check runs in its own process with its own time
limit; one that needs a library this env lacks is skipped with the env to run it in (the paper preset spreads the
work over envs/*.yaml):

    precision    the compute capability and the dtype "auto" picks (bfloat16 only from 8.0); a matmul in it
    nf4_emr      a tiny Llama in 4-bit NF4 (mmemory.emr.lm.load_llm), gradient checkpointing and loss scaling:
                 one step into a soft prompt, as train_emr does                                   (envs/malmm.yaml)
    counting     the 4-bit counting QLoRA through TRL (finetune_counting) and 4-bit prediction with its adapter
                                                                                                 (envs/counting.yaml)
    reminder_hf  the reminder's hf backend: Gemma-3 LoRA on a 4-bit base, then predict_reminder  (envs/unsloth.yaml)
    unsloth      the Unsloth backend: FastVisionModel LoRA, then predict_reminder on the same Unsloth base
                                                                                                  (envs/unsloth.yaml)
    ddp          coref training under torchrun with 2 processes where 2 GPUs exist (else 1)       (envs/coref.yaml)
    zero3        the same under DeepSpeed ZeRO-3 with resources/coref/ds_zero3.json (torch_adam)  (envs/coref.yaml)
    imagebind    ImageBind's architecture at tiny width with random weights, through its own transforms and
                 mmemory.encoders.ImageBindEncoder                                              (envs/imagebind.yaml)

In each env: `conda env create -f envs/<env>.yaml` (imagebind: then `bash envs/imagebind.post-deploy.sh` inside it),
`conda activate mmemory-<env>`, and from the repository root `python -m mmemory.gpu_check`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 600  # the whole run, all checks together


class Skip(Exception):
    """The check cannot run in this env (a library is missing); the message names the env to run it in."""


@dataclass(frozen=True)
class Check:
    name: str
    limit_s: int  # the check's own time limit (the run's remaining time caps it too)
    needs: tuple[str, ...]  # modules that must import; else the check is skipped
    env: str  # the env of envs/ that has them


CHECKS = (
    Check("precision", 60, ("torch",), "any"),
    Check("nf4_emr", 150, ("transformers", "bitsandbytes", "tokenizers"), "malmm"),
    Check("counting", 240, ("transformers", "bitsandbytes", "peft", "trl", "datasets"), "counting"),
    Check("reminder_hf", 240, ("transformers", "bitsandbytes", "peft", "trl", "datasets"), "unsloth"),
    Check("unsloth", 300, ("unsloth", "peft", "trl"), "unsloth"),
    Check("ddp", 240, ("transformers", "accelerate"), "coref"),
    Check("zero3", 300, ("transformers", "accelerate", "deepspeed"), "coref"),
    Check("imagebind", 180, ("imagebind", "pytorchvideo"), "imagebind"),
)
BY_NAME = {c.name: c for c in CHECKS}


def missing_modules(check: Check) -> list[str]:
    return [m for m in check.needs if importlib.util.find_spec(m) is None]


# ------------------------------------------------------------------------------------------------ tiny models

def _png(path: Path, seed: int, size: int = 64) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return str(path)


CORPUS = ["is it red? yes", "how many people are there? two", "what is on the table? a cup", "no", "yes",
          "the person on the left holds a phone", "is it sunny? no, it is cloudy"] * 20


def _tiny_llama(work: Path) -> str:
    from mmemory.toy.models import ToySizes, build_tiny_llama, train_tokenizer

    out = work / "tiny_llama"
    if not out.exists():
        tok = train_tokenizer(CORPUS, 300, work / "tok_llama")
        build_tiny_llama(tok, ToySizes(hidden_size=64, num_layers=2, num_heads=4), out)
    return str(out)


def _tiny_gemma3(work: Path) -> str:
    from mmemory.toy.models import ToySizes, build_tiny_gemma3, train_tokenizer

    out = work / "tiny_gemma3"
    if not out.exists():
        tok = train_tokenizer(CORPUS, 400, work / "tok_gemma3")
        build_tiny_gemma3(tok, ToySizes(), out)
    return str(out)


# ------------------------------------------------------------------------------------------------ the checks

def check_precision(work: Path, device: str) -> str:
    import torch

    from mmemory.precision import BF16_MIN_CAPABILITY, amp_flags, cuda_capability, resolve_dtype

    cap = cuda_capability(device)
    chosen = resolve_dtype("auto", device)
    if cap is not None:
        want = "bfloat16" if cap >= BF16_MIN_CAPABILITY else "float16"
        assert chosen == want, f"auto chose {chosen} on compute capability {cap}, expected {want}"
        flags = amp_flags("auto", device)
        assert flags == {"bf16": want == "bfloat16", "fp16": want == "float16"}, flags
    a = torch.randn(256, 256, device=device, dtype=getattr(torch, chosen))
    b = (a @ a).float()
    assert torch.isfinite(b).all()
    name = torch.cuda.get_device_name(device) if cap is not None else "cpu"
    return f"{name}, compute capability {cap}: auto -> {chosen}; torch.cuda.is_bf16_supported() says " \
           f"{torch.cuda.is_bf16_supported() if cap else 'n/a'}"


def check_nf4_emr(work: Path, device: str) -> str:
    import torch

    from mmemory.emr.lm import TextCodec, answer_loss, load_llm
    from mmemory.emr.train import use_loss_scaling
    from mmemory.precision import resolve_dtype

    dtype = resolve_dtype("auto", device, what="emr.llm_dtype")
    llm, tok = load_llm(_tiny_llama(work), load_in_4bit=True, device=device, dtype="auto")
    n4 = sum("4bit" in type(m).__name__ for m in llm.modules())
    assert n4 > 0, "no 4-bit layers after load_in_4bit"
    llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    llm.train()
    codec = TextCodec(tok)
    emb = llm.get_input_embeddings().embedding_dim
    soft = torch.randn(4, 4, emb, device=device, requires_grad=True)  # the bridge's soft prompt (float32)
    prompts = [codec.prompt_ids(q) for q in ("is it red?", "how many?", "what is it?", "is it sunny?")]
    answers = [codec.answer_ids(a) for a in ("yes", "two", "a cup", "no")]
    scaling = use_loss_scaling("auto", dtype, device)
    scaler = torch.amp.GradScaler("cuda", enabled=scaling)
    loss = answer_loss(llm, soft, prompts, answers, tok.pad_token_id, codec.lead_ids())
    scaler.scale(loss).backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all() and soft.grad.abs().sum() > 0
    return f"{n4} 4-bit layers, compute {dtype}, gradient checkpointing, loss scaling {'on' if scaling else 'off'}, " \
           f"loss {loss.item():.3f}"


def check_counting(work: Path, device: str) -> str:
    import yaml

    from mmemory.counting.model import CountingToySize, build_tiny_llava
    from mmemory.counting.predict import CountingGenerationConfig, predict_counts
    from mmemory.counting.train import PAPER_TRAIN, CountingTrainConfig, finetune_counting, sft_config
    from mmemory.precision import amp_flags

    model = work / "tiny_llava"
    build_tiny_llava(model, CountingToySize(), seed=0)
    frames = work / "frames"
    frames.mkdir(exist_ok=True)
    items = [{"id": str(i), "count": i % 4, "image": _png(frames / f"{i}.png", i)} for i in range(6)]
    paper = yaml.safe_load(PAPER_TRAIN)["counting"]["train"]
    cfg = CountingTrainConfig.from_dict({**paper, "epochs": 1, "batch_size": 2, "select_on_val": False,
                                         "report_to": "none", "logging_steps": 1})
    flags = {k: getattr(sft_config(cfg, str(work / "args"), evaluate=False), k) for k in ("bf16", "fp16")}
    assert flags == amp_flags("auto", device), (flags, amp_flags("auto", device))
    stats = finetune_counting(str(model), items, [], work / "adapter", work / "ckpt", work / "tb", cfg)
    assert stats["steps"] >= 1 and stats["load_in_4bit"], stats
    rows = predict_counts(str(model), work / "adapter", items[:2],
                          CountingGenerationConfig(max_new_tokens=4, batch_size=2, load_in_4bit=True))
    assert len(rows) == 2
    return f"QLoRA {stats['steps']} steps (loss {stats['train_loss']:.3f}, {flags}), 4-bit prediction with the adapter"


def _reminder_examples(work: Path):
    from mmemory.reminder.finetune import chat_example
    from mmemory.reminder.prompts import PromptBook, Sample

    book = PromptBook.load(REPO / "resources" / "prompts" / "reminder_system.txt")
    (work / "img").mkdir(exist_ok=True)
    samples = [Sample(image_id=i, round=2, conversation=f"Q: is it red?\nA: {'yes' if i % 2 else 'no'}\nQ: is it big?",
                      question="is it big?", target="no", image_path=_png(work / "img" / f"{i}.png", i))
               for i in range(4)]
    from PIL import Image

    examples = [chat_example(s, "<reminder>Turn 1: it was red.</reminder>\nno", book,
                             Image.open(s.image_path).convert("RGB"), with_instruction=True) for s in samples]
    return samples, examples, book


def _finetune_then_predict(work: Path, backend: str) -> str:
    import json as _json

    from mmemory.reminder.finetune import TRAINING_META, FinetuneConfig, finetune_vlm
    from mmemory.reminder.predict import GenerationConfig, choose_predict_backend, predict_reminder

    model = _tiny_gemma3(work)
    samples, examples, book = _reminder_examples(work)
    cfg = FinetuneConfig(backend=backend, load_in_4bit=True, with_instruction=True, epochs=1, batch_size=2,
                         learning_rate=1e-4, max_length=512, logging_steps=1, optim="adamw_8bit")
    adapter = work / f"adapter_{backend}"
    stats = finetune_vlm(examples, model, str(adapter), str(work / f"ckpt_{backend}"), cfg)
    assert stats["backend"] == backend and stats["steps"] >= 1, stats
    (adapter / TRAINING_META).write_text(_json.dumps({"with_instruction": True, "backend": stats["backend"],
                                                      "load_in_4bit": True}))
    gen = GenerationConfig(max_new_tokens=8, num_beams=1, batch_size=2, load_in_4bit=True)
    assert choose_predict_backend(gen.backend, str(adapter)) == backend
    out = predict_reminder(samples, "finetuned", model, work / f"P_{backend}.json", work / f"G_{backend}.jsonl",
                           work / f"progress_{backend}", f"gpu_check {backend}", book, gen, adapter=str(adapter))
    assert out["n"] == len(samples)
    return f"LoRA on a 4-bit base, {stats['steps']} steps (loss {stats['train_loss']:.3f}); predict_reminder " \
           f"loaded the same base ({backend}) with the adapter"


def check_reminder_hf(work: Path, device: str) -> str:
    return _finetune_then_predict(work, "hf")


def check_unsloth(work: Path, device: str) -> str:
    import unsloth  # noqa: F401  (Unsloth patches transformers: import it first)

    if not device.startswith("cuda"):
        raise Skip("Unsloth needs CUDA")
    return _finetune_then_predict(work, "unsloth")


def _coref_world(work: Path) -> dict:
    from mmemory.coref.data import dump_coref
    from mmemory.coref.models import CorefToySize, build_toy_coref_models
    from mmemory.coref.toy import make_toy_dialogues

    if not (work / "coref_tiny").exists():
        items = make_toy_dialogues(24, 0)
        (work / "coref_train.json").write_text(dump_coref(items[:16]), encoding="utf-8")
        (work / "coref_val.json").write_text(dump_coref(items[16:]), encoding="utf-8")
        build_toy_coref_models(work / "coref_train.json", {"tiny": work / "coref_tiny"},
                               {"tiny": CorefToySize(hidden_size=64, num_layers=2, num_heads=4, vocab_size=300)})
    return {"train": str(work / "coref_train.json"), "val": str(work / "coref_val.json"),
            "model": str(work / "coref_tiny")}


def _torchrun_coref(work: Path, device: str, name: str, settings: dict, limit_s: int) -> str:
    import torch

    world = _coref_world(work)
    nproc = min(2, torch.cuda.device_count()) if device.startswith("cuda") else 2
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p))
    cfg = {"epochs": 1, "batch_size": 4, "warmup_steps": 1, "logging_steps": 1, "fp16": True, **settings}
    out = work / name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "mmemory.coref", "train", "--model", world["model"], "--train", world["train"], "--val", world["val"],
           "--out", str(out / "model"), "--checkpoints", str(out / "ckpt"), "--metrics", str(out / "m.json"),
           "--config", json.dumps(cfg), "--threads", "1", "--log-file", str(out / "train.log")]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=limit_s)
    if done.returncode:
        log = (out / "train.log").read_text()[-1500:] if (out / "train.log").exists() else ""
        raise AssertionError(f"torchrun exit {done.returncode}: {done.stderr[-1500:]} {log}")
    m = json.loads((out / "m.json").read_text())
    assert m["world_size"] == nproc, m
    return f"{nproc} process(es), {m['steps']} steps, settings {settings or 'plain DDP'}"


def check_ddp(work: Path, device: str, limit_s: int = 200) -> str:
    return _torchrun_coref(work, device, "ddp", {}, limit_s)


def check_zero3(work: Path, device: str, limit_s: int = 260) -> str:
    ds = json.loads((REPO / "resources" / "coref" / "ds_zero3.json").read_text())
    assert ds["optimizer"]["params"].get("torch_adam") is True, "ds_zero3.json must set torch_adam (no nvcc)"
    return _torchrun_coref(work, device, "zero3", {"deepspeed": str(REPO / "resources" / "coref" / "ds_zero3.json"),
                                                    "gradient_checkpointing": True}, limit_s)


def check_imagebind(work: Path, device: str) -> str:
    import torch
    from imagebind import data as ib_data
    from imagebind.models.imagebind_model import ImageBindModel, ModalityType

    from mmemory.encoders import Encoder, ImageBindEncoder

    small = dict(out_embed_dim=32, vision_embed_dim=64, vision_num_blocks=1, vision_num_heads=4, audio_embed_dim=32,
                 audio_num_blocks=1, audio_num_heads=2, text_embed_dim=64, text_num_blocks=1, text_num_heads=4,
                 depth_embed_dim=32, depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=32,
                 thermal_num_blocks=1, thermal_num_heads=2, imu_embed_dim=32, imu_num_blocks=1, imu_num_heads=2)
    torch.manual_seed(0)
    model = ImageBindModel(**small).to(device).eval()
    enc = ImageBindEncoder.__new__(ImageBindEncoder)  # the encoder's own methods, with the tiny model inside
    Encoder.__init__(enc, device, 2, True)
    enc._data, enc._modality, enc.model, enc.dim, enc.path = ib_data, ModalityType, model, 32, ""
    (work / "ib").mkdir(exist_ok=True)
    images = enc.encode_images([_png(work / "ib" / f"{i}.png", i, 96) for i in range(3)])
    texts = enc.encode_texts(["a red cup", "two people"])
    assert images.shape == (3, 32) and texts.shape == (2, 32)
    return f"tiny ImageBindModel on {device}: images {images.shape}, texts {texts.shape} through imagebind.data"


RUNNERS = {"precision": check_precision, "nf4_emr": check_nf4_emr, "counting": check_counting,
           "reminder_hf": check_reminder_hf, "unsloth": check_unsloth, "ddp": check_ddp, "zero3": check_zero3,
           "imagebind": check_imagebind}


# ------------------------------------------------------------------------------------------------ driver

def run_one(name: str, work: Path, device: str, limit_s: int) -> dict:
    """Run one check in this process; {"status": pass|fail|skip, "detail": ...}."""
    check = BY_NAME[name]
    missing = missing_modules(check)
    if missing:
        return {"status": "skip", "detail": f"{', '.join(missing)} not importable here: run it in envs/{check.env}.yaml"}
    work.mkdir(parents=True, exist_ok=True)
    try:
        fn = RUNNERS[name]
        detail = fn(work, device, limit_s) if name in ("ddp", "zero3") else fn(work, device)
        return {"status": "pass", "detail": detail}
    except Skip as e:
        return {"status": "skip", "detail": str(e)}
    except Exception as e:  # reported, not raised: the other checks still run
        tb = traceback.format_exc().strip().splitlines()
        return {"status": "fail", "detail": f"{type(e).__name__}: {str(e)[:600]} | {' / '.join(tb[-4:])[:600]}"}


def run_all(names: list[str], timeout_s: int, device: str, work: Path) -> list[dict]:
    """Each check in a subprocess with min(its limit, the time left); one line printed per check."""
    deadline = time.monotonic() + timeout_s
    results = []
    for name in names:
        left = int(deadline - time.monotonic())
        limit = min(BY_NAME[name].limit_s, left)
        if limit < 10:
            res = {"name": name, "status": "fail", "detail": f"not run: the {timeout_s} s of --timeout are used up"}
        else:
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "mmemory.gpu_check", "--run", name, "--device", device,
                   "--workdir", str(work / name), "--limit", str(limit)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=REPO,
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                          p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)})
                last = (proc.stdout.strip().splitlines() or [""])[-1]
                try:
                    res = json.loads(last)
                except json.JSONDecodeError:
                    res = {"status": "fail", "detail": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
            except subprocess.TimeoutExpired:
                res = {"status": "fail", "detail": f"timed out after {limit} s"}
            res = {"name": name, **res, "seconds": round(time.monotonic() - t0, 1)}
        results.append(res)
        print(f"{res['status'].upper():4} {name:11} {res.get('seconds', 0):6.1f}s  {res['detail']}", flush=True)
    return results


def plan(names: list[str]) -> list[str]:
    """What each check would do here: run, or skip (and where to run it instead); and the dtype it would pick."""
    from mmemory.precision import resolve_dtype

    lines = [f"dtype auto here: {resolve_dtype('auto')} (bfloat16 only from compute capability 8.0)"]
    for name in names:
        c = BY_NAME[name]
        missing = missing_modules(c)
        where = "runs here" if not missing else f"skipped here ({', '.join(missing)} missing): run it in envs/{c.env}.yaml"
        lines.append(f"{name:11} limit {c.limit_s:3d} s  {where}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmemory.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help=f"comma-separated checks ({', '.join(BY_NAME)}); default: all")
    ap.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds for the whole run (default 600)")
    ap.add_argument("--list", action="store_true", help="print what would run here and exit (no GPU needed)")
    ap.add_argument("--workdir", default=None, help="where the tiny models and outputs go (default: a temp dir)")
    ap.add_argument("--strict", action="store_true", help="a skipped check is a failure too")
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)  # one check, in this process (the driver's child)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=300, help=argparse.SUPPRESS)
    ap.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # the project's tests: CPU smoke
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(BY_NAME)
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        ap.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    if a.run:
        print(json.dumps(run_one(a.run, Path(a.workdir), a.device, a.limit)), flush=True)
        return 0
    if a.list:
        print("\n".join(plan(names)))
        return 0
    import torch

    device = "cuda"
    if not torch.cuda.is_available():
        if not a.allow_cpu:
            print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU node, in "
                  "each env of envs/ (python -m mmemory.gpu_check --list shows what an env can run)", file=sys.stderr)
            return 2
        device = "cpu"
    with tempfile.TemporaryDirectory(prefix="mmemory_gpu_check_") as tmp:
        work = Path(a.workdir) if a.workdir else Path(tmp)
        t0 = time.monotonic()
        results = run_all(names, a.timeout, device, work)
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "skip")}
    print(f"gpu_check: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped in "
          f"{time.monotonic() - t0:.0f} s on {device}", flush=True)
    return 1 if counts["fail"] or (a.strict and counts["skip"]) else 0


if __name__ == "__main__":
    sys.exit(main())
