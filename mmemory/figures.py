"""One way to write a figure: rendered to memory, then written atomically (a kill never leaves half a PNG)."""
from __future__ import annotations

import io
from pathlib import Path

from mmemory.io import atomic_write_bytes


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG at `path` atomically, and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
