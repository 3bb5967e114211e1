"""Split sizes shared by the stages' data steps: refuse an empty train, val or test split before anything is written
(an empty val or test split would only fail later, in training or evaluation) and say how many items are needed.

    msg = empty_split_message({"train": 3, "val": 0, "test": 1}, 4, "data/mall", 0.2, 0.1, "frames", "counting.data")
    if msg: raise CountingDataError(msg)
"""
from __future__ import annotations

SPLITS = ("train", "val", "test")


def min_items_for_splits(test_share: float, val_share_of_train: float, limit: int = 100_000) -> int | None:
    """The fewest items for which a random split (test = round(n * test_share), val = round(rest *
    val_share_of_train)) gives train, val and test one item each; None when no number does (a share of 0)."""
    for n in range(3, limit):
        n_test = round(n * test_share)
        n_val = round((n - n_test) * val_share_of_train)
        if n_test >= 1 and n_val >= 1 and n - n_test - n_val >= 1:
            return n
    return None


def empty_split_message(sizes: dict[str, int], n_items: int, source: str, test_share: float,
                        val_share_of_train: float, what: str, section: str, how: str | None = None) -> str | None:
    """None when every split has an item; else the error message: which split is empty, the sizes, how many items
    the settings need, and the fix. `how` replaces the explanation of the random split (e.g. for a fixed split)."""
    empty = [name for name in SPLITS if not sizes.get(name)]
    if not empty:
        return None
    need = min_items_for_splits(test_share, val_share_of_train)
    if how is None:
        if need is None:
            how = (f"no number of {what} gives every split one with test_share {test_share} and val_share_of_train "
                   f"{val_share_of_train}: set both above 0")
        else:
            how = (f"with test_share {test_share} and val_share_of_train {val_share_of_train} every split needs at "
                   f"least one, which takes at least {need} distinct {what}")
    plural = "s" if len(empty) > 1 else ""
    return (f"{source}: the {' and '.join(empty)} split{plural} would be empty ({n_items} usable {what}: train "
            f"{sizes.get('train', 0)}, val {sizes.get('val', 0)}, test {sizes.get('test', 0)}); {how}. Fix: give more "
            f"{what}, or change {section}.test_share / val_share_of_train")
