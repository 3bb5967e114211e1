"""Teachers that write `<reminder>` training responses for a `Sample` (config reminder.teacher.backend).

- `template`: deterministic and offline (the embedded default). It recalls the latest earlier turn that shares a
  content word with the question (else the latest turn), quoting its question and answer (`quote="turn"`) or its
  answer only (`quote="answer"`), and concludes with the held-out answer. A question about an earlier picture
  (toy users: `Sample.asks_about`) is answered from memory, not from a turn of this dialogue, so its reminder
  recalls that picture instead: `<reminder>earlier picture: the green triangle was at the top left.</reminder>`.
- `ollama`: the official `ollama` Python client against an Ollama server (paper: gemma3:27b); the image is sent
  base64-encoded, as in the seeds' generate_from_api.py. The server is config reminder.teacher.host (null: the
  OLLAMA_HOST environment variable, else http://127.0.0.1:11434). On a cluster the job runs on a compute node, where
  127.0.0.1 is that node: run `ollama serve` where the job can reach it (a login-node or service host, named in
  `host`) or start it inside the job. `make_teacher` asks the server for its models before any sample
  (`check_ollama`): no answer, or no such model, ends the job with one line (exit code 2) instead of three failed
  tries per sample.
- `transformers`: any local image-text-to-text checkpoint (a path), run with `generate`.

A teacher's `respond(sample)` returns the raw response text. It raises `TransientTeacherError` for faults worth
retrying (timeouts, connection errors, 5xx, malformed bodies) and `TeacherError` for faults that are not.
"""
from __future__ import annotations

import base64
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mmemory.config import StrictConfig
from mmemory.io import InputError
from mmemory.reminder.prompts import PromptBook, Sample, build_prompt, teacher_messages

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z]+")
_EARLIER_OBJECT = re.compile(r"where was the (.+?)\?$")  # the object an earlier-picture question names
_STOP = {"a", "an", "the", "is", "are", "there", "any", "what", "where", "how", "many", "of", "in", "on", "it",
         "this", "that", "do", "does", "you", "can", "see", "to", "and", "or", "be", "color", "shape", "anything",
         "object", "picture", "image"}


class TeacherError(RuntimeError):
    """A fault that retrying will not fix (bad configuration, a missing model)."""


class TransientTeacherError(TeacherError):
    """A fault worth retrying with backoff (timeout, connection error, HTTP 5xx, malformed body)."""


class TeacherUnavailableError(InputError, TeacherError):
    """The configured teacher cannot serve at all (no server answers, or it lacks the model): one line, exit 2."""


@dataclass
class TeacherConfig(StrictConfig):
    """config reminder.teacher: who writes the training <reminder> responses, and how they are sampled (defaults:
    config.yaml's)."""

    SECTION = "reminder.teacher"

    backend: str = "template"  # template (deterministic, offline) | ollama | transformers
    host: str | None = "http://127.0.0.1:11434"  # ollama server (None: $OLLAMA_HOST, else this default)
    model: str = "gemma3:27b"  # ollama model name
    model_path: str | None = None  # transformers backend: a local image-text-to-text checkpoint directory
    timeout_s: float = 120  # per-request timeout (ollama)
    options: dict = field(default_factory=dict)  # ollama generation options, e.g. {"temperature": 0.2}
    max_new_tokens: int = 128  # transformers backend: response length limit
    template_turns: int = 1  # template backend: earlier turns recalled in the reminder
    template_quote: str = "answer"  # template backend: recall a turn's answer (answer) or its question + answer (turn)
    concurrency: int = 1  # parallel teacher requests
    max_attempts: int = 3  # tries per sample (invalid responses and server faults) before it is rejected
    backoff_s: float = 1.0  # wait backoff_s * 2^k seconds after the k-th server fault
    rounds_per_dialog: int | None = 1  # rounds sampled per training dialogue (None: every round)
    include_last_round: bool = True  # always sample the last round (the seeds used only the last round)
    max_dialogs: int | None = None  # use at most this many training dialogues (None: all)


def ollama_host(host: str | None) -> str:
    """The Ollama server to ask: config reminder.teacher.host, else $OLLAMA_HOST, else TeacherConfig's host."""
    return host or os.environ.get("OLLAMA_HOST") or TeacherConfig.host


def _same_model(wanted: str, listed: str) -> bool:
    """Ollama names: "gemma3" is "gemma3:latest"; a registry prefix ("registry.ollama.ai/library/") is ignored."""
    def norm(name: str) -> str:
        name = name.split("/")[-1]
        return name if ":" in name else f"{name}:latest"

    return norm(wanted) == norm(listed)


def check_ollama(client, host: str, model: str) -> None:
    """Before any sample: the server at `host` answers and has `model`; else TeacherUnavailableError naming the host,
    the model and the fix (one line, exit code 2 through the workflow's log setup)."""
    import httpx

    try:
        listed = client.list()
    except (httpx.HTTPError, ConnectionError, OSError) as e:
        raise TeacherUnavailableError(
            f"reminder.teacher.host {host}: no Ollama server answers ({type(e).__name__}: {e}). Fix: start `ollama "
            f"serve` where this job can reach it (on a cluster 127.0.0.1 is the compute node itself): a login-node or "
            "service host named in reminder.teacher.host (or OLLAMA_HOST), or a server started inside the job "
            "(docs/reminder.md, 'The Ollama teacher on a cluster')") from e
    except Exception as e:  # ollama.ResponseError and malformed replies
        raise TeacherUnavailableError(f"reminder.teacher.host {host}: the server did not list its models "
                                      f"({type(e).__name__}: {str(e)[:200]}); is it an Ollama server?") from e
    names = [getattr(m, "model", None) or (m.get("name") if isinstance(m, dict) else None)
             for m in (getattr(listed, "models", None) or [])]
    names = [n for n in names if n]
    if not any(_same_model(model, n) for n in names):
        raise TeacherUnavailableError(
            f"reminder.teacher.host {host}: the Ollama server has no model {model!r} (it has: "
            f"{', '.join(sorted(names)) or 'none'}). Fix: `ollama pull {model}` on that server, or set "
            "reminder.teacher.model to one it has")
    logger.info("ollama at %s answers and has %s", host, model)


class TemplateTeacher:
    """Deterministic teacher: a reminder of the related earlier turns, then the held-out answer."""

    name = "template"

    def __init__(self, max_turns: int = TeacherConfig.template_turns, quote: str = TeacherConfig.template_quote):
        if quote not in ("turn", "answer"):
            raise TeacherError(f"reminder.teacher.template_quote {quote!r}: use turn or answer")
        self.max_turns = max_turns  # earlier turns recalled in the reminder
        self.quote = quote  # "turn": question and answer of the recalled turn; "answer": its answer only

    def respond(self, sample: Sample) -> str:
        if sample.asks_about is not None:
            m = _EARLIER_OBJECT.search(sample.question)
            if m:
                return f"<reminder>earlier picture: the {m.group(1)} was {sample.target}.</reminder>\n{sample.target}"
        lines = sample.conversation.splitlines()
        pairs = [(lines[i][3:], lines[i + 1][3:]) for i in range(len(lines) - 1)
                 if lines[i].startswith("Q: ") and lines[i + 1].startswith("A: ")]
        words = set(_WORD.findall(sample.question.lower())) - _STOP
        related = [(t, q, a) for t, (q, a) in enumerate(pairs, 1) if words & set(_WORD.findall(q.lower()))]
        if not related and pairs:
            related = [(len(pairs), *pairs[-1])]
        quoted = " ".join(f"Turn {t}: {q} {a}." if self.quote == "turn" else f"Turn {t}: {a}."
                          for t, q, a in related[-self.max_turns:])
        return f"<reminder>{quoted or 'No earlier turns.'}</reminder>\n{sample.target}"


def _image_b64(path: str | None) -> list[str]:
    if not path:
        return []
    p = Path(path)
    if not p.is_file():
        raise TeacherError(f"image {p} not found; re-run prepare_data or fix data.visdial.*_images")
    return [base64.b64encode(p.read_bytes()).decode("ascii")]


class OllamaTeacher:
    """gemma3:27b (or any model) behind an Ollama server, through the official client (`ollama.Client.chat`)."""

    name = "ollama"

    def __init__(self, book: PromptBook, model: str = TeacherConfig.model, host: str | None = TeacherConfig.host,
                 timeout_s: float = TeacherConfig.timeout_s, options: dict | None = None, client=None):
        try:
            import ollama
        except ImportError as e:
            raise TeacherError("the ollama backend needs `pip install ollama==0.6.3` (requirements.txt)") from e
        self._ollama = ollama
        host = ollama_host(host)
        self.book, self.model, self.host = book, model, host
        self.options = dict(options or {})
        self.client = client or ollama.Client(host=host, timeout=timeout_s)

    def respond(self, sample: Sample) -> str:
        import httpx
        import pydantic

        messages = teacher_messages(sample, self.book)
        messages[-1]["images"] = _image_b64(sample.image_path)
        try:
            resp = self.client.chat(model=self.model, messages=messages, stream=False, options=self.options or None)
        except self._ollama.ResponseError as e:
            code = getattr(e, "status_code", -1)
            if code >= 500 or code == 429:
                raise TransientTeacherError(f"ollama server error {code}: {str(e.error)[:200]}") from e
            if code == 404:
                raise TeacherError(f"ollama at {self.host}: model {self.model!r} not found ({e.error}); "
                                   f"run `ollama pull {self.model}` on the server") from e
            raise TeacherError(f"ollama request rejected ({code}): {str(e.error)[:200]}") from e
        except httpx.TimeoutException as e:
            raise TransientTeacherError(f"ollama at {self.host} timed out ({type(e).__name__})") from e
        except (ConnectionError, httpx.TransportError) as e:
            raise TransientTeacherError(f"cannot reach ollama at {self.host} ({type(e).__name__}: {e})") from e
        except (ValueError, TypeError, pydantic.ValidationError) as e:  # JSONDecodeError is a ValueError
            raise TransientTeacherError(f"malformed reply from ollama at {self.host} ({type(e).__name__})") from e
        try:
            content = resp["message"]["content"]
        except (KeyError, TypeError) as e:
            raise TransientTeacherError(f"malformed reply from ollama at {self.host}: no message content") from e
        if not isinstance(content, str):
            raise TransientTeacherError(f"malformed reply from ollama at {self.host}: content is not text")
        return content.strip()


class TransformersTeacher:
    """A local image-text-to-text checkpoint (`AutoModelForImageTextToText` + `AutoProcessor`) used as teacher."""

    name = "transformers"

    def __init__(self, book: PromptBook, model_path: str, max_new_tokens: int = TeacherConfig.max_new_tokens,
                 device: str | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if not Path(model_path).exists():
            raise TeacherError(f"reminder.teacher.model_path {model_path!r} does not exist; the transformers "
                               "teacher loads a local checkpoint (download it first)")
        self.book, self.max_new_tokens = book, max_new_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.model = AutoModelForImageTextToText.from_pretrained(model_path).to(self.device).eval()

    def respond(self, sample: Sample) -> str:
        import torch
        from PIL import Image

        messages = build_prompt(sample, "prompt", self.book, with_image=bool(sample.image_path))
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images = [Image.open(sample.image_path).convert("RGB")] if sample.image_path else None
        batch = self.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
        batch = batch.to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, batch["input_ids"].shape[1]:]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()


def make_teacher(cfg: TeacherConfig | dict, book: PromptBook, check: bool = True):
    """The teacher named by config reminder.teacher (a dict is read as `TeacherConfig`, refusing unknown keys); an
    ollama teacher's server is checked first (`check_ollama`)."""
    cfg = cfg if isinstance(cfg, TeacherConfig) else TeacherConfig.from_dict(cfg)
    if cfg.backend == "template":
        return TemplateTeacher(cfg.template_turns, cfg.template_quote)
    if cfg.backend == "ollama":
        teacher = OllamaTeacher(book, cfg.model, cfg.host, cfg.timeout_s, cfg.options)
        if check:
            check_ollama(teacher.client, teacher.host, teacher.model)
        return teacher
    if cfg.backend == "transformers":
        if not cfg.model_path:
            raise TeacherError("reminder.teacher.backend is transformers: set reminder.teacher.model_path")
        return TransformersTeacher(book, cfg.model_path, cfg.max_new_tokens)
    raise TeacherError(f"unknown reminder.teacher.backend {cfg.backend!r}: use template, ollama or transformers")
