"""`hw predict`: try a finished run's model on your own input; the command added to hw/cli.py's app here."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hw.cli_options import EXTRA_OPTIONS
from hw.errors import user_errors

predict_app = typer.Typer()
# hw tang's own decoding flags, which override the run's generation settings here too.
Temperature, TopP, TopK, MaxNewTokens, NumBeams, DoSample = (
    EXTRA_OPTIONS["tang"][name][0]
    for name in ("temperature", "top_p", "top_k", "max_new_tokens", "num_beams", "do_sample")
)

EXAMPLES = (
    "hw predict runs/yelp/yelp-<time> 'It was good.'   |   hw predict runs/qa/qa-<time> --question 'Who?' "
    "--context 'Ann wrote it.'   |   hw predict runs/whisper/zh-<time> talk.mp4 --timestamps   |   "
    "hw predict runs/tang/tang-<time> 床前明月光， --temperature 0.7   |   "
    "hw predict runs/atc/atc-<time> tower.wav --text 'lufthansa five three one eight contact zurich'"
)


@predict_app.command(epilog=f"Examples: {EXAMPLES}")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (runs/<homework>/<run>).")],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Sentences (yelp), first lines (tang) or audio/video files (whisper, atc)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Text file: one input (atc: transcript) per line; for qa, the context."),
    ] = None,
    questions: Annotated[
        list[str] | None, typer.Option("--question", help="qa: a question about the context (repeatable).")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="qa: the paragraph to answer from.")
    ] = None,
    texts: Annotated[
        list[str] | None, typer.Option("--text", help="atc: a transcript to correct (repeatable).")
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="whisper: also print each chunk's start and end.")
    ] = False,
    temperature: Temperature = None,
    top_p: TopP = None,
    top_k: TopK = None,
    max_new_tokens: MaxNewTokens = None,
    num_beams: NumBeams = None,
    do_sample: DoSample = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input.")] = False,
) -> None:
    """Try a finished run's model on your own input: classify, answer, transcribe, continue or correct, as the run
    would."""
    with user_errors():
        from hw import predict as predictor

        request = predictor.Request(
            inputs=list(inputs or []),
            questions=list(questions or []),
            context=context,
            texts=list(texts or []),
            file=file,
            timestamps=timestamps,
            decoding={
                key: value
                for key, value in (
                    ("temperature", temperature),
                    ("top_p", top_p),
                    ("top_k", top_k),
                    ("max_new_tokens", max_new_tokens),
                    ("num_beams", num_beams),
                    ("do_sample", do_sample),
                )
                if value is not None
            },
        )
        results = predictor.predict(run_dir, request)
    for result in results:
        typer.echo(json.dumps(result, ensure_ascii=False) if as_json else _text(result))


def _text(result: dict[str, Any]) -> str:
    """One result as the user reads it."""
    if "label" in result:  # yelp
        return f"{result['label']}\t{result['score']:.3f}\t{result['input']}"
    if "answer" in result:  # qa
        return f"{result['question']}\t{result['answer'] or '(no answer)'}\t{result['score']:.3f}"
    if "corrected" in result:  # atc: the transcript (of audio), then each corrector's
        lines = [f"{result['input']}: {result['text']}" if "text" in result else result["input"]]
        return "\n".join(lines + [f"  {name}: {text}" for name, text in result["corrected"].items()])
    if "text" in result:  # whisper, and atc without a corrector
        lines = [f"{result['input']}: {result['text']}"]
        lines += [
            f"  [{_seconds(chunk['timestamp'][0])} → {_seconds(chunk['timestamp'][1])}] {chunk['text']}"
            for chunk in result.get("chunks", [])
        ]
        return "\n".join(lines)
    return f"{result['input']}{result['prediction']}"  # tang: the first line, continued


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
