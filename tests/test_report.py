"""Report fragments and the assembled summary, built from hand-written run artifacts."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hw import report, runs
from hw import summary as summary_module
from hw.errors import HwError
from hw.record import RunRecord
from hw.report_format import number
from hw.report_text import title
from tests.test_runs import FullDisk


def _fake_run(
    root: Path, name: str, variant: str, tiny: bool, accuracy: float, homework: str = "yelp", **run: Any
) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    settings = {
        "run": {"homework": homework, "variant": variant, "tiny": tiny, "eval_only": False, **run},
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
        samples=[
            {"text": "Great | place", "label": "5 stars", "prediction": "5 stars", "correct": True},
            {"text": "Fine", "label": "4 stars", "prediction": "3 stars", "correct": False},
            {"text": "Awful", "label": "1 star", "prediction": "5 stars", "correct": False},
        ],
        wall_seconds=12.5,
    ).write(run_dir)
    (run_dir / "env.json").write_text(
        json.dumps({"device": "CPU (2 cores)", "packages": {"hw": "0.1.0"}, "seed": 42, "precision": "fp32"})
    )
    return run_dir


def test_fragment_is_named_after_its_run_and_shows_reference_then_this_run(tmp_path: Path) -> None:
    fragment = report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), tmp_path / "reports")
    text = fragment.read_text()
    assert fragment == tmp_path / "reports" / "fragments" / "yelp" / "r1.md"
    table = text[text.index("| Source |") :].splitlines()[:4]
    assert table == [
        "| Source | Epoch | Training loss | Validation loss | Accuracy |",
        "|---|---|---|---|---|",
        "| course | 1 | — | — | 0.526 |",
        "| **This run** | 1 | 1.5000 | 1.2500 | 0.600 |",
    ]
    assert "Great \\| place" in text  # a pipe in a sample cannot break the table
    assert "not a real result" not in text
    assert "**precision:** fp32" in text


def test_samples_show_the_largest_errors_first_then_right_ones_and_link_the_file(tmp_path: Path) -> None:
    text = report.write_fragment(
        _fake_run(tmp_path, "r1", "yelp", False, 0.6), tmp_path / "reports"
    ).read_text()
    wrong = text[text.index("**Wrong predictions, largest error first** (2 of 3)") :].split("\n\n")[1]
    assert wrong.splitlines() == [
        "| text | label | prediction |",  # `correct` is the table's heading
        "|---|---|---|",
        "| Awful | 1 star | 5 stars |",  # 4 stars off before 1 star off
        "| Fine | 4 stars | 3 stars |",
    ]
    assert "**Right predictions** (1 of 3)" in text
    assert "[all samples: samples.jsonl](../../../r1/samples.jsonl)" in text


def test_a_second_run_of_a_variant_keeps_the_first_and_both_show_newest_training_first(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "old", "yelp", False, 0.5), reports)
    report.write_fragment(_fake_run(tmp_path, "new", "yelp", False, 0.6, label="full data"), reports)
    report.write_fragment(
        _fake_run(tmp_path, "check", "yelp", False, 0.6, eval_only=True, checkpoint="runs/x/old"), reports
    )
    rows = _table_rows(summary_module.assemble(reports).path.read_text(), "### yelp · yelp")
    assert [row.split(" | ")[0] for row in rows] == [
        "| course",
        "| **run** `new` · “full data”",
        "| **run** `old`",
        "| **run** `check` · eval-only of `old`",
    ]
    latest = summary_module.assemble(reports, runs_shown="latest").path.read_text()
    assert [row.split(" | ")[0] for row in _table_rows(latest, "### yelp · yelp")][1:] == [
        "| **run** `new` · “full data”"
    ]
    assert "*2 older run(s) not shown: `hw report --runs all`*" in latest
    only = summary_module.assemble(reports, only=["old"]).path.read_text()
    assert [row.split(" | ")[0] for row in _table_rows(only, "### yelp · yelp")][1:] == ["| **run** `old`"]
    with pytest.raises(
        HwError, match="--only 'nope': no fragment of that run; runs with fragments: check, new, old"
    ):
        summary_module.assemble(reports, only=["nope"])


def _table_rows(summary: str, heading: str) -> list[str]:
    """The rows (no header) of the first table under `heading`."""
    after = summary.split(heading + "\n\n")[1]
    table = next(block for block in after.split("\n\n") if block.startswith("| Source |"))
    return table.splitlines()[2:]


def test_summary_has_a_glance_table_first_and_one_table_per_variant(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "full-run", "yelp-full", False, 0.69), reports)
    report.write_fragment(_fake_run(tmp_path, "tiny-run", "yelp", True, 0.88), reports)
    summary = summary_module.assemble(reports).path.read_text()
    assert summary.startswith("# Weekly summary\n\nContents: [yelp](#yelp)\n\n## Results at a glance\n\n")
    glance = summary.split("## Results at a glance\n\n")[1].split("\n\n")[0].splitlines()
    assert glance == [
        "| Homework | Metric | Course | Homework report | This run | Difference |",
        "|---|---|---|---|---|---|",
        "| yelp · yelp | Accuracy | 0.526 | — | 0.880 | TINY, not a real result |",
        "| yelp · yelp-full | Accuracy | 0.526 | — | 0.690 | +0.164 vs course |",
    ]
    assert summary.count("| Source |") == 2
    assert (
        _table_rows(summary, "### yelp · yelp-full")[1]
        == "| **run** `full-run` | 1 | 1.5000 | 1.2500 | 0.690 |"
    )
    assert "Tiny offline preset — not a real result" in summary


@pytest.mark.parametrize(
    ("value", "key", "printed"),
    [
        (74.88174077578051, "exact_match", "74.88"),
        (0.2532, "wer", "25.32 %"),
        (0.70, "wer_orthographic", "70.0 %"),
        (0.6711, "accuracy", "0.6711"),
        (0.526, "accuracy", "0.526"),
        (0.4166667, "traditional_share", "41.7 %"),
        (94208, "total_parameters", "94,208"),
        (7.99, "epoch", "7.99"),
        (0.0056, "atco2/zero_shot/none/mean_utterance_wer", "0.56 %"),
    ],
)
def test_numbers_print_at_the_precision_they_are_published_at(value: float, key: str, printed: str) -> None:
    assert number(value, key) == printed


def test_column_titles_are_words() -> None:
    assert title("wer_orthographic") == "WER, raw text (zh: whole sentences as words)"
    assert title("atcosim/fine_tuned/none/wer") == "ATCOSIM WER: fine-tuned Whisper + no corrector"
    assert title("sentence_error_rate", "zh") == "有错误的句子"


def test_notes_are_placed_verbatim_and_a_template_is_never_overwritten(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    summary_module.assemble(reports)
    template = reports / "notes" / "yelp.md"
    assert template.read_text().startswith("<!-- Your own words about yelp")
    template.write_text("Full data raises accuracy **markedly**.\n")
    (reports / "notes" / "yelp-yelp.md").write_text("Validation loss rises: overfitting.\n")
    summary = summary_module.assemble(reports).path.read_text()
    assert (
        "## yelp\n\nFull data raises accuracy **markedly**.\n\n### yelp · yelp\n\nValidation loss rises"
        in summary
    )
    assert template.read_text() == "Full data raises accuracy **markedly**.\n"


def test_locale_zh_translates_the_fixed_labels_not_the_numbers(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    summary = summary_module.assemble(reports, locale="zh").path.read_text()
    assert summary.startswith(
        "# 每周总结\n\n目录: [yelp](#yelp)\n\n## 结果一览\n\n| 作业 | 指标 | 课程 | 作业报告 | 本次运行 | 差值 |"
    )
    assert "| 来源 | 轮次 | 训练损失 | 验证损失 | 准确率 |" in summary
    assert "| **运行** `r1` | 1 | 1.5000 | 1.2500 | 0.600 |" in summary
    with pytest.raises(HwError, match="--locale 'fr'"):
        summary_module.assemble(reports, locale="fr")


def _with_history(run_dir: Path) -> Path:
    history = [{"step": 10, "loss": 1.5}, {"step": 20, "eval_loss": 1.25, "eval_accuracy": 0.6}]
    (run_dir / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return run_dir


def test_the_figure_is_a_png_the_fragment_links(tmp_path: Path) -> None:
    fragment = report.write_fragment(_with_history(_fake_run(tmp_path, "r1", "yelp", False, 0.6)), tmp_path)
    assert (tmp_path / "figures" / "yelp" / "r1.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![loss and metric curves](../../figures/yelp/r1.png)" in fragment.read_text()


def test_a_figure_that_cannot_be_written_is_one_user_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib import pyplot

    run_dir = _with_history(_fake_run(tmp_path, "r1", "yelp", False, 0.6))
    monkeypatch.setattr(runs, "os", FullDisk())
    with pytest.raises(
        HwError, match=r"cannot write '.*/reports/figures/yelp/r1\.png' \(No space left on device; "
    ):
        report.write_fragment(run_dir, tmp_path / "reports")
    assert [path.name for path in (tmp_path / "reports").rglob("*")] == ["figures", "yelp"]
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
        summary_module.assemble(tmp_path)


def test_a_bad_runs_or_locale_choice_names_only_that_option(tmp_path: Path) -> None:
    with pytest.raises(HwError, match=r"^--runs 'some' is not one of all, latest: choose one of them$"):
        summary_module.assemble(tmp_path, runs_shown="some")
    with pytest.raises(HwError, match=r"^--locale 'de' is not one of en, zh: choose one of them$"):
        summary_module.assemble(tmp_path, locale="de")


def test_assembly_imports_no_torch_transformers_or_datasets(tmp_path: Path) -> None:
    """What keeps `nox -s report` light: it installs hw without them."""
    reports = tmp_path / "reports"
    report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), reports)
    code = (
        "import sys; from pathlib import Path; from hw.cli import app; from typer.testing import CliRunner; "
        f"assert CliRunner().invoke(app, ['report', '--reports-dir', {str(reports)!r}]).exit_code == 0; "
        "print(sorted({'torch', 'transformers', 'datasets', 'matplotlib'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout == "[]\n"


def test_a_fragment_ends_with_its_end_line(tmp_path: Path) -> None:
    fragment = report.write_fragment(_fake_run(tmp_path, "r1", "yelp", False, 0.6), tmp_path / "reports")
    assert fragment.read_text().endswith("\n\n<!-- /hw-fragment -->\n")
    summary = summary_module.assemble(tmp_path / "reports")
    assert summary.skipped == []
    assert "hw-fragment" not in summary.path.read_text()


FOREIGN = {
    "notes.md": (b"# my notes\n", "not an hw report fragment: no hw-fragment header"),
    "gbk.md": ("<!-- hw-fragment {} -->\n## 唐詩\n".encode("gbk"), "not UTF-8 text"),
    "junk.md": (bytes(range(256)) * 4, "not UTF-8 text"),
    "header.md": (
        b'<!-- hw-fragment {"homework": "x"} -->\n',
        "damaged hw-fragment header, or written by an older hw: no variant, run",
    ),
    "broken.md": (b"<!-- hw-fragment {oops} -->\n## yelp\n", "damaged hw-fragment header: Expecting"),
}


def test_summary_skips_every_foreign_or_cut_fragment_with_one_line_naming_it(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    whole = report.write_fragment(_fake_run(tmp_path, "whole", "yelp", False, 0.6), reports)
    text = report.write_fragment(_fake_run(tmp_path, "cut", "yelp", False, 0.7, "qa"), reports).read_text()
    (reports / "fragments" / "qa" / "cut.md").write_text(text[: text.index("Wrong predictions")])  # cut short
    (reports / "fragments" / "bom.md").write_bytes(
        b"\xef\xbb\xbf" + whole.read_bytes().replace(b"\n", b"\r\n")
    )
    whole.unlink()  # read once, from the copy an editor re-saved with a BOM and CRLF line ends
    for name, (content, _) in FOREIGN.items():
        (reports / "fragments" / name).write_bytes(content)
    summary = summary_module.assemble(reports)
    reasons = {name: reason for name, (_, reason) in FOREIGN.items()}
    reasons["qa/cut.md"] = "incomplete: its last line is not <!-- /hw-fragment --> (cut short"
    assert len(summary.skipped) == len(reasons)
    for line in summary.skipped:
        name = next(name for name in reasons if f"/fragments/{name}' (" in line)
        assert reasons.pop(name) in line, line
        assert line.endswith("; re-run its homework, or move the file out of fragments/)")
    text = summary.path.read_text()
    assert "| **run** `whole` | 1 | 1.5000 | 1.2500 | 0.600 |" in text
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
        summary_module.assemble(tmp_path)


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
