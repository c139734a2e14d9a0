"""Read a speech dataset (Common Voice download, `audiofolder`, or any dataset `hw.sources` reads) as undecoded
`audio` and `sentence` columns."""

import csv
from pathlib import Path
from typing import Any

from hw import sources, tiny
from hw.errors import HwError

# Common Voice release layout: clips/*.mp3 plus one TSV per split (dev.tsv is the validation split).
COMMONVOICE_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
# `audiofolder` layout: metadata.csv (file_name, transcription) at the top, or in one subfolder per split.
AUDIOFOLDER_SPLITS = {"train": "train", "validation": "validation", "dev": "validation", "test": "test"}


def load_speech_splits(
    dataset: str,
    config_name: str | None = None,
    revision: str = "main",
    text_column: str = "sentence",
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Every split of a speech dataset as a `datasets.Dataset` with columns `audio` and `sentence`.

    `audio` holds a file path or `{"bytes", "path"}`; nothing is decoded here (see `speech.load_clip`). Accepted:
    a Common Voice download (`clips/` and `train.tsv`/`dev.tsv`/`test.tsv`), an `audiofolder` directory,
    or anything `sources.load_dataset_dict` reads (Hub id in parquet form, `save_to_disk` folder).

    Args:
        text_column: the transcript column of a Hub or `save_to_disk` dataset.
        data_dir: subfolder of a Hub dataset or its local copy (see `sources.load_dataset_dict`).
    """
    path = Path(tiny.resolve(dataset)).expanduser()
    if path.is_dir() and any((path / name).is_file() for name in COMMONVOICE_SPLITS.values()):
        return _commonvoice(path)
    if path.is_dir() and metadata_files(path):
        return _audiofolder(path, text_column)
    dataset_dict = sources.load_dataset_dict(dataset, config_name, revision, data_dir=data_dir)
    return {name: _audio_and_sentence(split, text_column, dataset) for name, split in dataset_dict.items()}


def _read_rows(path: Path, required: list[str], delimiter: str) -> list[dict[str, str]]:
    # Common Voice TSVs are written unquoted (sentences may hold a lone "), metadata.csv quoted as CSV.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        rows, columns = list(reader), reader.fieldnames or []
    missing = [column for column in required if column not in columns]
    if missing:
        raise HwError(
            f"{path} lacks column(s) {', '.join(missing)} (it has: {', '.join(columns) or 'none'}); "
            f"give it a header row with {', '.join(required)}"
        )
    return rows


def _commonvoice(folder: Path) -> dict[str, Any]:
    import datasets

    splits = {}
    for split, file_name in COMMONVOICE_SPLITS.items():
        if (folder / file_name).is_file():
            rows = _read_rows(folder / file_name, ["path", "sentence"], "\t")
            splits[split] = datasets.Dataset.from_dict(
                {
                    "audio": [str(folder / "clips" / row["path"]) for row in rows],
                    "sentence": [row["sentence"] for row in rows],
                }
            )
    return splits


def metadata_files(folder: Path) -> dict[str, Path]:
    """Split name → metadata.csv: one per split subfolder, else the top-level one as `train`."""
    found = {
        split: folder / subfolder / "metadata.csv"
        for subfolder, split in AUDIOFOLDER_SPLITS.items()
        if (folder / subfolder / "metadata.csv").is_file()
    }
    if not found and (folder / "metadata.csv").is_file():
        found["train"] = folder / "metadata.csv"
    return found


def _audiofolder(folder: Path, text_column: str) -> dict[str, Any]:
    import datasets

    splits = {}
    for split, metadata in metadata_files(folder).items():
        with metadata.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        text = text_column if text_column in header else "transcription"
        rows = _read_rows(metadata, ["file_name", text], ",")
        splits[split] = datasets.Dataset.from_dict(
            {
                "audio": [str(metadata.parent / row["file_name"]) for row in rows],
                "sentence": [row[text] for row in rows],
            }
        )
    return splits


def _audio_and_sentence(split: Any, text_column: str, dataset: str) -> Any:
    """Keep the audio undecoded (`Audio(decode=False)`: datasets' decoder needs torchcodec and FFmpeg)."""
    import datasets

    sources.require_columns(split, ["audio", text_column], dataset)
    if isinstance(split.features["audio"], datasets.Audio):
        split = split.cast_column("audio", datasets.Audio(decode=False))
    split = split.select_columns(["audio", text_column])
    return split if text_column == "sentence" else split.rename_column(text_column, "sentence")
