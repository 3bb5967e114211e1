"""Model references and the Hugging Face Hub: offline by default, and a model that cannot be found is one clear error.

Importing `mmemory` (every rule's script and every `python -m mmemory.*` command does, before transformers, TRL or
huggingface_hub) sets, unless the environment already sets them,

    HF_HUB_DISABLE_TELEMETRY=1   no usage reports (TRL's SFTTrainer sends one per trainer otherwise)
    HF_HUB_OFFLINE=1             no hub calls: a model is a local directory or a hub id already in the local cache

so the embedded default, whose models are all local paths, never opens a network connection. To let transformers
download a hub id (paper scale on a machine with a network), run with `HF_HUB_OFFLINE=0`, or download once
(`hf download meta-llama/Llama-3.2-1B`) and keep the default.

    check_model("results/models/coref/tiny-s", "--model")   # a local checkpoint: fine
    check_model("meta-llama/Llama-3.2-1B", "--model")        # offline and not cached: ModelNotFoundError
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from mmemory.io import InputError

HUB_DEFAULTS = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class ModelNotFoundError(InputError):
    """A model reference that is neither a local checkpoint nor a usable hub id; the message names it and the fix."""


def set_hub_defaults(environ=os.environ) -> None:
    """Telemetry off and the hub offline, unless the environment already says otherwise (see the module docstring)."""
    for key, value in HUB_DEFAULTS.items():
        environ.setdefault(key, value)


def hub_offline() -> bool:
    """Whether huggingface_hub is offline now (HF_HUB_OFFLINE, as the hub library read it)."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def looks_like_hub_id(ref: str) -> bool:
    """`name` or `org/name` with the hub's characters: `meta-llama/Llama-3.2-1B` yes, `results/models/x`, `./m` no."""
    return bool(_HUB_ID.match(ref)) and not ref.startswith((".", "~"))


def check_model(ref: str | Path, what: str = "model", files: tuple[str, ...] = ("config.json",)) -> str:
    """`ref` as a string when it can be loaded: a local directory holding `files`, or a hub id that is in the local
    cache (offline) or may be downloaded (HF_HUB_OFFLINE=0). Else ModelNotFoundError naming `what`, the reference
    and the fix. Call it before from_pretrained, whose errors for a missing model are long and name no setting."""
    ref = str(ref)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{what} {ref}: a file, not a model directory. Fix: give the directory that "
                                     "save_pretrained wrote (it holds config.json and the weights)")
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise ModelNotFoundError(f"{what} {ref}: the directory has no {', '.join(missing)}, so it is not a "
                                     "saved model. Fix: give the directory that save_pretrained wrote, or rebuild it")
        return ref
    if not looks_like_hub_id(ref):
        raise ModelNotFoundError(f"{what} {ref}: no such model directory. Fix: check the path (a model the workflow "
                                 "builds appears under results/models/ once its rule has run)")
    if not hub_offline():
        return ref  # transformers downloads it (or reports the hub's own error)
    from huggingface_hub import try_to_load_from_cache

    if all(isinstance(try_to_load_from_cache(ref, f), str) for f in files):
        return ref
    raise ModelNotFoundError(
        f"{what} {ref}: not a local directory, and as a hub id it is not in the local Hugging Face cache while the "
        "hub is offline (HF_HUB_OFFLINE=1, mmemory's default). Fix: give the path of a local checkpoint, download it "
        f"once (`hf download {ref}`), or run with HF_HUB_OFFLINE=0 on a machine with a network")
