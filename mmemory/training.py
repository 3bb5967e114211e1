"""What every trainer of the stages shares: the callback that logs the loss at each save, the whole-run loss from a
log history, the lookup of the checkpoint to resume from, and the TensorBoard logs (a Hugging Face Trainer's
`report_to="tensorboard"` pointed at the run's folder, `point_tensorboard`; a hand-written loop's `scalar_writer`).
`tensorboard --logdir results` shows every run of the workflow; the report lists their folders."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def log_at_saves_callback():
    """A TrainerCallback that logs the loss at every checkpoint and at the last step, so that the log history a
    checkpoint carries covers every step before it (`whole_run_loss`)."""
    from transformers import TrainerCallback

    class LogAtSaves(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True
            return control

        def on_epoch_end(self, args, state, control, **kw):
            if control.should_save:
                control.should_log = True
            return control

    return LogAtSaves()


def whole_run_loss(log_history: list[dict]) -> float | None:
    """The mean training loss over every optimizer step of the run, from the Trainer's log history (each "loss"
    entry is the mean over the steps since the previous one). After a resume the Trainer's `training_loss` averages
    only the steps of its own call (0.0 when it resumed at the last step); this figure does not."""
    total, last = 0.0, 0
    for h in log_history:
        if "loss" in h and "step" in h and h["step"] > last:
            total += h["loss"] * (h["step"] - last)
            last = h["step"]
    return total / last if last else None


def latest_checkpoint(checkpoint_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` directory (one with trainer_state.json), or None, also when
    `checkpoint_dir` is missing. transformers' `get_last_checkpoint` finds the newest; a save cut short by a kill
    leaves that one without trainer_state.json (the Trainer writes it last), and then the newest complete one
    before it is returned."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints

    d = str(Path(checkpoint_dir))
    if not os.path.isdir(d):
        return None
    newest = get_last_checkpoint(d)
    if newest is None or os.path.exists(os.path.join(newest, TRAINER_STATE_NAME)):
        return newest
    done = [c for c in sort_checkpoints(d) if os.path.exists(os.path.join(c, TRAINER_STATE_NAME))]
    return done[-1] if done else None


def point_tensorboard(trainer, log_dir: str | Path) -> None:
    """Send a Trainer's TensorBoard events (`report_to="tensorboard"`) to `log_dir` (transformers 5 has no
    logging_dir argument)."""
    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            cb.logging_dir = str(log_dir)


def scalar_writer(log_dir: str | Path):
    """A TensorBoard `SummaryWriter` for a hand-written training loop, in an emptied `log_dir`: a run that resumes
    writes its checkpoint's loss history again first (events written after that checkpoint, or never flushed, by the
    run that was cut short would otherwise be doubled or lost)."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(log_dir, ignore_errors=True)
    return SummaryWriter(str(log_dir), flush_secs=10)
