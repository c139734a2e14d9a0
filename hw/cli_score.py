"""`hw score`: score existing predictions without a model (SQuAD EM/F1, speech WER/CER); a sub-command of hw/cli.py."""

import json
from pathlib import Path
from typing import Annotated

import typer

from hw.errors import user_errors

score_app = typer.Typer(
    help="Score existing predictions without a model: SQuAD (official v1.1 rules) or speech (WER/CER).",
    no_args_is_help=True,
)


@score_app.command(
    "squad", epilog="Example: hw score squad dev-v1.1.json runs/qa/<run>/eval_predictions.json --json"
)
def score_squad(
    data: Annotated[Path, typer.Argument(help="Official SQuAD JSON file, e.g. dev-v1.1.json.")],
    predictions: Annotated[Path, typer.Argument(help='JSON object {"<question id>": "<answer text>"}.')],
    squad_v2: Annotated[bool, typer.Option("--squad-v2", help="SQuAD 2.0 file and rules.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {exact_match, f1, total, missing} as JSON.")
    ] = False,
) -> None:
    """SQuAD exact match and F1 of a predictions file, equal to evaluate-v1.1.py (evaluate-v2.0.py with --squad-v2)."""
    from hw.metrics.squad import score_files

    with user_errors():
        result = score_files(data, predictions, squad_v2=squad_v2)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"exact match {result['exact_match']:.2f} · F1 {result['f1']:.2f} on {result['total']} questions "
            f"({result['missing']} without a prediction, scored 0)"
        )


@score_app.command(name="asr", epilog="Example: hw score asr runs/whisper/zh-*/samples.jsonl --normalize zh")
def score_asr(
    file: Annotated[Path, typer.Argument(help="CSV (with a header row) or JSONL of transcripts.")],
    hyp_col: Annotated[str, typer.Option("--hyp-col", help="Column of the hypotheses.")] = "hypothesis",
    ref_col: Annotated[str, typer.Option("--ref-col", help="Column of the references.")] = "reference",
    normalize: Annotated[
        str, typer.Option("--normalize", help="none, basic, zh or atc (ATC spellings, digits).")
    ] = "basic",
    zh_convert: Annotated[
        str, typer.Option("--zh-convert", help="OpenCC conversion for zh: t2s, s2twp…")
    ] = "t2s",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """WER and CER (with substitutions, deletions, insertions) of a file of hypotheses and references."""
    from hw.metrics import asr

    with user_errors():
        result = asr.score_file(file, hyp_col, ref_col, normalize, zh_convert)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(
        f"{result['utterances']} utterances, normalizer {normalize}: WER {result['wer']:.4f} "
        f"(S {result['substitutions']}, D {result['deletions']}, I {result['insertions']} of "
        f"{result['reference_words']} words), CER {result['cer']:.4f}, "
        f"sentence error rate {result['sentence_error_rate']:.4f}, mean utterance WER {result['mean_utterance_wer']:.4f}"
    )
