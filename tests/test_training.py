"""mmemory.training: the checkpoint to resume from and the whole-run loss, shared by every trainer."""
from mmemory.training import latest_checkpoint, whole_run_loss


def _checkpoint(d, step, complete=True):
    c = d / f"checkpoint-{step}"
    c.mkdir(parents=True)
    if complete:
        (c / "trainer_state.json").write_text("{}")
    return str(c)


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    d = tmp_path / "ckpt"
    d.mkdir()
    assert latest_checkpoint(d) is None
    _checkpoint(d, 9)
    ten = _checkpoint(d, 10)  # by step number, not by name: 10 after 9
    assert latest_checkpoint(d) == ten and latest_checkpoint(str(d) + "/") == ten
    _checkpoint(d, 12, complete=False)  # a save cut short by a kill: no trainer_state.json
    assert latest_checkpoint(d) == ten
    (d / "checkpoint-20").write_text("")  # a file, not a checkpoint
    assert latest_checkpoint(d) == ten


def test_only_torn_checkpoints_give_none(tmp_path):
    _checkpoint(tmp_path, 3, complete=False)
    assert latest_checkpoint(tmp_path) is None


def test_whole_run_loss_weights_each_log_by_its_steps():
    assert whole_run_loss([]) is None
    assert whole_run_loss([{"loss": 2.0, "step": 2}, {"loss": 1.0, "step": 6}, {"eval_loss": 9.0, "step": 6}]) == (2 * 2.0 + 4 * 1.0) / 6
