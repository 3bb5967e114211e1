"""What every trainer of the stages shares: the callback that logs the loss at each save, the whole-run loss from a
log history, the lookup of the checkpoint to resume from, and the TensorBoard logs (a Hugging Face Trainer's
`report_to="tensorboard"` pointed at the run's folder, `point_tensorboard`; a hand-written loop's `scalar_writer`),
and the copy pre-training that gives a tiny random stand-in the in-context copying a pretrained LM already has
(`pretrain_copy`; the coref Llamas and the `<reminder>` Gemma-3 stand-in).
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


def pretrain_copy(model, tokenizer, steps: int, span: int = 32, batch_size: int = 32, lr: float = 3e-3,
                  seed: int = 0) -> dict:
    """Train `model` in place to continue a repeated random span: each sequence is BOS, a random prefix of
    0..span-l tokens, a random span of l (4..span) tokens, and the span again; the loss is on the repeat after its
    first token. The spans and prefixes vary in length, so only copying by content (an induction head: find the
    previous occurrence of the current token, predict what followed it) lowers the loss; tokens are drawn
    uniformly from the non-special vocabulary, so nothing about any task is learnt. Deterministic by `seed`.
    Returns {steps, first_loss, last_loss, seconds}."""
    import math
    import time

    import torch
    from tqdm import tqdm

    if steps <= 0:
        return {"steps": 0}
    if span < 4:
        raise ValueError(f"pretrain_copy: span {span} must be at least 4 tokens")
    g = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    vocab = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, int(0.03 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (i + 1) / warm if i < warm else max(
        0.02, 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, steps - warm)))))
    model.train()
    losses, t0 = [], time.time()
    for _ in tqdm(range(steps), desc=f"copy pre-training (spans up to {span})", unit="step", mininterval=5):
        length = int(torch.randint(4, span + 1, (1,), generator=g))
        prefix = int(torch.randint(0, span - length + 1, (1,), generator=g))
        draw = vocab[torch.randint(len(vocab), (batch_size, prefix + length), generator=g)]
        bos = torch.full((batch_size, 1), tokenizer.bos_token_id)
        ids = torch.cat([bos, draw, draw[:, prefix:]], dim=1)
        labels = ids.clone()
        labels[:, :2 + prefix + length] = -100  # the first repeated token cannot be predicted; the rest can
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-20:]
    return {"steps": steps, "first_loss": round(losses[0], 4), "last_loss": round(sum(tail) / len(tail), 4),
            "seconds": round(time.time() - t0, 1)}
