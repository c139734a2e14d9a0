"""`train.report_to`: TensorBoard events under the run directory, read back with TensorBoard's own reader; a
tracker that is unknown or not installed is one line before anything loads."""

import importlib.util
from pathlib import Path

import pytest

from hw.config import TrainConfig
from tests.invoking import invoke, one_line_error


@pytest.mark.slow
def test_tensorboard_records_the_training_loss_under_the_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    invoke(
        ["yelp", "--tiny", "--set", "train.report_to=[tensorboard]", "--output-dir", str(run_dir)]
        + ["--reports-dir", str(tmp_path / "reports")]
    )
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert not (run_dir / "checkpoints" / "runs").exists()  # transformers 5's default place, not used
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert len(losses) >= 2 and all(loss.value > 0 for loss in losses)
    assert events.Scalars("eval/loss")  # and the validation loss of each evaluation


@pytest.mark.parametrize(
    ("tracker", "message"),
    [
        ("wandb", "train.report_to names wandb, which is not installed; run `pip install 'hw[wandb]'`"),
        ("tensorbord", "train.report_to: 'tensorbord' is not a tracker the Trainer knows; use none, all or"),
    ],
)
def test_a_missing_or_unknown_tracker_is_one_line_before_any_run(
    tmp_path: Path, tracker: str, message
) -> None:
    if tracker == "wandb" and importlib.util.find_spec("wandb"):
        pytest.skip("wandb is installed here")
    error = one_line_error(
        ["yelp", "--tiny", "--set", f"train.report_to=[{tracker}]", "--output-dir", str(tmp_path / "run")]
    )
    assert error.startswith(message)
    assert not (tmp_path / "run").exists()


def test_none_goes_alone() -> None:
    assert TrainConfig().report_to == ["none"]
    assert TrainConfig(report_to=["none", "tensorboard"]).problems() == [
        "report_to: ['none', 'tensorboard'] names trackers and none; keep one or the other"
    ]
