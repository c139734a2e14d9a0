"""Report fragments and the assembled summary, built from hand-written run artifacts."""

import json
from pathlib import Path

import pytest
import yaml

from hw import report, runs
from hw.errors import HwError
from hw.record import RunRecord
from tests.test_runs import FullDisk


def _fake_run(
    root: Path, name: str, variant: str, tiny: bool, accuracy: float, homework: str = "yelp"
) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    settings = {
        "run": {"homework": homework, "variant": variant, "tiny": tiny, "eval_only": False},
        "model": {"name_or_path": "bert-base-cased"},
        "data": {"dataset": "yelp_review_full"},
        "train": {"learning_rate": 5e-5, "per_device_train_batch_size": 16, "num_train_epochs": 1},
        "reference": [{"source": "course", "rows": [{"epoch": 1, "accuracy": 0.526}]}],
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(settings))
    RunRecord(
        final={"accuracy": accuracy},
        epochs=[
            {"epoch": 1.0, "step": 63, "training_loss": 1.5, "validation_loss": 1.25, "accuracy": accuracy}
        ],
        weights="fine-tuned in this run",
        dataset="yelp_review_full",
        data={"train": 1000, "eval": 1000},
        samples=[{"text": "Great | place", "label": "5 stars"}],
        wall_seconds=12.5,
    ).write(run_dir)
    (run_dir / "env.json").write_text(
        json.dumps({"device": "CPU (2 cores)", "packages": {"hw": "0.1.0"}, "seed": 42})
    )
    return run_dir


def test_fragment_shows_reference_then_this_run(tmp_path: Path) -> None:
    fragment = report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), tmp_path / "reports")
    text = fragment.read_text()
    assert fragment.name == "yelp-yelp.md"
    table = text[text.index("| Source |") :].splitlines()[:4]
    assert table == [
        "| Source | Epoch | Training Loss | Validation Loss | Accuracy |",
        "|---|---|---|---|---|",
        "| course | 1 | — | — | 0.5260 |",
        "| **this run** (yelp) | 1 | 1.5000 | 1.2500 | 0.6000 |",
    ]
    assert "Great \\| place" in text  # a pipe in a sample cannot break the table
    assert "not a real result" not in text


def test_summary_merges_runs_of_one_homework_and_labels_tiny(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "full-run", "yelp-full", False, 0.69), reports)
    report.write_fragment(_fake_run(tmp_path, "tiny-run", "yelp", True, 0.88), reports)
    summary = report.assemble(reports).path.read_text()
    table = summary[summary.index("| Source |") :].split("\n\n")[0].splitlines()
    assert table[2:] == [
        "| course | 1 | — | — | 0.5260 |",
        "| **yelp-full** run `full-run` | 1 | 1.5000 | 1.2500 | 0.6900 |",
        "| **yelp** run `tiny-run` — TINY, not a real result | 1 | 1.5000 | 1.2500 | 0.8800 |",
    ]
    assert summary.count("| Source |") == 1
    assert "Tiny offline preset — not a real result" in summary
    assert summary.startswith("# Weekly summary\n\nContents: [yelp](#yelp)")


def _with_history(run_dir: Path) -> Path:
    history = [{"step": 10, "loss": 1.5}, {"step": 20, "eval_loss": 1.25, "eval_accuracy": 0.6}]
    (run_dir / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return run_dir


def test_the_figure_is_a_png_the_fragment_links(tmp_path: Path) -> None:
    fragment = report.write_fragment(_with_history(_fake_run(tmp_path, "r1", "yelp", False, 0.6)), tmp_path)
    assert (tmp_path / "figures" / "yelp-yelp.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![loss and metric curves](../figures/yelp-yelp.png)" in fragment.read_text()


def test_a_figure_that_cannot_be_written_is_one_user_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib import pyplot

    run_dir = _with_history(_fake_run(tmp_path, "r1", "yelp", False, 0.6))
    monkeypatch.setattr(runs, "os", FullDisk())
    with pytest.raises(
        HwError, match=r"cannot write '.*/reports/figures/yelp-yelp\.png' \(No space left on device; "
    ):
        report.write_fragment(run_dir, tmp_path / "reports")
    assert [path.name for path in (tmp_path / "reports").rglob("*")] == ["figures"]
    assert pyplot.get_fignums() == []  # closed: a long-lived process (hw smoke) does not pile figures up


def test_hw_report_orders_homeworks_as_the_cli_lists_them_then_alphabetically(tmp_path: Path) -> None:
    from tests.invoking import invoke

    reports = tmp_path / "reports"
    for homework in ("zeta", "tang", "yelp"):
        report.write_fragment(_fake_run(tmp_path, homework, "v", False, 0.5, homework), reports)
    invoke(["report", "--reports-dir", str(reports)])
    contents = (reports / "summary.md").read_text().splitlines()[2]
    assert contents == "Contents: [yelp](#yelp) · [tang](#tang) · [zeta](#zeta)"


def test_summary_without_fragments_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(HwError, match="no report fragments in"):
        report.assemble(tmp_path)


def test_assembly_imports_no_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    code = f"import sys; from hw import report; from pathlib import Path; report.assemble(Path({str(reports)!r})); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_fragment_ends_with_its_end_line(tmp_path: Path) -> None:
    fragment = report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), tmp_path / "reports")
    assert fragment.read_text().endswith("\n\n<!-- /hw-fragment -->\n")
    summary = report.assemble(tmp_path / "reports")
    assert summary.skipped == []
    assert "hw-fragment" not in summary.path.read_text()


FOREIGN = {
    "notes.md": (b"# my notes\n", "not an hw report fragment: no hw-fragment header"),
    "gbk.md": ("<!-- hw-fragment {} -->\n## 唐詩\n".encode("gbk"), "not UTF-8 text"),
    "junk.md": (bytes(range(256)) * 4, "not UTF-8 text"),
    "header.md": (b'<!-- hw-fragment {"homework": "x"} -->\n', "damaged hw-fragment header: no variant, run"),
    "broken.md": (b"<!-- hw-fragment {oops} -->\n## yelp\n", "damaged hw-fragment header: Expecting"),
}


def test_summary_skips_every_foreign_or_cut_fragment_with_one_line_naming_it(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    whole = report.write_fragment(_fake_run(tmp_path, "whole", "yelp", False, 0.6), reports)
    text = report.write_fragment(_fake_run(tmp_path, "cut", "yelp", False, 0.7, "qa"), reports).read_text()
    (reports / "fragments" / "qa-yelp.md").write_text(text[: text.index("Sample predictions")])  # cut short
    (reports / "fragments" / "bom.md").write_bytes(
        b"\xef\xbb\xbf" + whole.read_bytes().replace(b"\n", b"\r\n")
    )
    whole.unlink()  # read once, from the copy an editor re-saved with a BOM and CRLF line ends
    for name, (content, _) in FOREIGN.items():
        (reports / "fragments" / name).write_bytes(content)
    summary = report.assemble(reports)
    reasons = {name: reason for name, (_, reason) in FOREIGN.items()}
    reasons["qa-yelp.md"] = "incomplete: its last line is not <!-- /hw-fragment --> (cut short"
    assert len(summary.skipped) == len(reasons)
    for line in summary.skipped:
        name = next(name for name in reasons if f"/fragments/{name}' (" in line)
        assert reasons.pop(name) in line, line
        assert line.endswith("; re-run its homework, or move the file out of fragments/)")
    text = summary.path.read_text()
    assert "| **yelp** run `whole` | 1 | 1.5000 | 1.2500 | 0.6000 |" in text
    assert "## qa" not in text and "\r" not in text


def test_hw_report_warns_once_per_skipped_file_and_exits_0(tmp_path: Path) -> None:
    from hw.cli import app
    from tests.invoking import runner

    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    (reports / "fragments" / "notes.md").write_text("# my notes\n")
    (reports / "fragments" / "latin1.md").write_bytes("<!-- hw-fragment {} -->\ncafé\n".encode("latin-1"))
    result = runner.invoke(app, ["report", "--reports-dir", str(reports)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"hw: warning: skipped '{reports}/fragments/latin1.md' (not UTF-8 text: binary, or saved in another "
        "encoding; re-run its homework, or move the file out of fragments/)",
        f"hw: warning: skipped '{reports}/fragments/notes.md' (not an hw report fragment: no hw-fragment "
        "header; re-run its homework, or move the file out of fragments/)",
    ]
    assert result.stdout == f"summary: {reports}/summary.md (2 files of fragments/ skipped, see above)\n"


def test_a_summary_of_only_foreign_files_is_a_user_error_naming_them(tmp_path: Path) -> None:
    (tmp_path / "fragments").mkdir()
    (tmp_path / "fragments" / "notes.md").write_text("# my notes\n")
    with pytest.raises(
        HwError, match=r"no report fragments in '.*/fragments' \(skipped: '.*/notes\.md' \(not an hw report"
    ):
        report.assemble(tmp_path)


@pytest.mark.parametrize(("signum", "exit_code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_summary_is_written_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: str, exit_code: int
) -> None:
    """Ctrl-C outside a run's training gave a KeyboardInterrupt traceback; SIGTERM ended hw without a word."""
    import os
    import signal

    from hw.cli import app
    from tests.invoking import runner

    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    real_fsync = os.fsync

    def signalled_fsync(descriptor: int) -> None:  # a real signal, half-way through writing summary.md
        os.kill(os.getpid(), getattr(signal, signum))
        real_fsync(descriptor)

    monkeypatch.setattr(runs.os, "fsync", signalled_fsync)
    result = runner.invoke(app, ["report", "--reports-dir", str(reports)])
    monkeypatch.undo()
    assert result.exit_code == exit_code, result.output
    assert result.stderr.strip() == (
        f"hw: interrupted ({signum}); nothing was left half-written: run the command again"
    )
    assert not (reports / "summary.md").exists()
    assert not [path.name for path in reports.rglob("*") if path.name.endswith(runs.PARTIAL_SUFFIX)]
