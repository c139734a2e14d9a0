"""`hw export` and `hw push`: share a finished run's model; commands added to hw/cli.py's app there."""

from pathlib import Path
from typing import Annotated

import typer

from hw.errors import user_errors

share_app = typer.Typer()
RunArgument = Annotated[Path, typer.Argument(help="A finished run directory (runs/<homework>/<run>).")]


@share_app.command(epilog="Example: hw export runs/yelp/imdb-lora-<time> --out exported/imdb-lora")
def export(
    run_dir: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="New (or empty) folder for the standalone model.")],
) -> None:
    """Merge the run's LoRA adapter into its base and save a standalone model (safetensors, tokenizer, card)."""
    with user_errors():
        from hw import export as exporter

        for note in exporter.export(run_dir, out):
            typer.echo(f"hw: {note}", err=True)
    typer.echo(f"exported: {out} (load it with from_pretrained({str(out)!r}) or transformers.pipeline)")


@share_app.command(
    epilog="Example: HF_TOKEN=hf_... hw push runs/whisper/zh-<time> --repo-id alice/whisper-large-v2-zh-lora"
)
def push(
    run_dir: RunArgument,
    repo_id: Annotated[
        str, typer.Option("--repo-id", help="Model repository ORG/NAME (created if missing).")
    ],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    merged: Annotated[
        bool, typer.Option("--merged", help="Push the adapter merged into its base (as hw export writes it).")
    ] = False,
    with_data: Annotated[
        bool,
        typer.Option(
            "--with-data", help="Also push the run's hw whisper-dataset audiofolder (dataset ORG/NAME)."
        ),
    ] = False,
) -> None:
    """Upload the run's model or adapter with its model card to the Hugging Face Hub (token: HF_TOKEN only)."""
    with user_errors():
        from hw import push as pusher

        urls = pusher.push(run_dir, repo_id, private=private, merged=merged, with_data=with_data)
    for url in urls:
        typer.echo(f"pushed: {url}")
