"""`hw export` and `hw push`: share a finished run's model; commands registered by hw/cli.py."""

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
