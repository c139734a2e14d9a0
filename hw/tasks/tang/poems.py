"""The course's Tang poem files: where they are (`TangData`), and reading them into checked records (`load_poems`)."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from hw import tiny
from hw.config import DataPath, Tokens
from hw.errors import HwError

log = logging.getLogger(__name__)

TRAIN_FILE, TEST_FILE = "Tang_training_data.json", "Tang_testing_data.json"
GROUND_TRUTH_FILE = "Tang_testing_gt.txt"
TRAIN_KEYS, TEST_KEYS = ("instruction", "input", "output"), ("instruction", "input")


@dataclass(frozen=True)
class TangData:
    """Where the course's poem files are, and how many poems are used."""

    directory: DataPath | None = None
    """Folder holding the course's files (`--data DIR`) or `tiny:tang`; the course's poems are not on the Hub."""
    train_file: DataPath | None = None
    """Training poems, a JSON list of {instruction, input, output}; default `<directory>/Tang_training_data.json`."""
    test_file: DataPath | None = None
    """Test prompts, a JSON list of {instruction, input}; default `<directory>/Tang_testing_data.json`."""
    ground_truth_file: DataPath | None = None
    """One line per test item, its continuation (clauses split by TAB); default `<directory>/Tang_testing_gt.txt`
    when present. Without it only form, repetition and script are scored."""
    max_train_samples: int | None = 1040
    """The FIRST this many training poems (the course's choice, not a shuffled subset); None uses all."""
    max_eval_samples: int | None = None
    """The first this many test items; None uses all."""
    validation_size: int = 0
    """Poems held out from the END of the training file to measure a validation loss (0: none)."""
    cutoff_len: Tokens = 256
    """Tokens kept per training example (prompt + answer); longer ones are cut."""

    def problems(self) -> list[str]:
        least = {"max_train_samples": 1, "max_eval_samples": 1, "validation_size": 0, "cutoff_len": 1}
        values = {key: getattr(self, key) for key in least}
        return [
            f"{key}: {value!r} must be at least {least[key]}"
            for key, value in values.items()
            if value is not None and value < least[key]
        ]


@dataclass(frozen=True)
class Poems:
    """The course's files, cut to size; `references` (ground-truth lines) is None without a ground-truth file."""

    train: list[dict[str, str]]
    validation: list[dict[str, str]]
    test: list[dict[str, str]]
    references: list[str] | None


def load_poems(data: TangData, need_train: bool) -> Poems:
    """Test items and their ground truth, and (when training) the first training poems and the held-out tail."""
    directory = Path(tiny.resolve(data.directory)).expanduser() if data.directory else None
    test = _read_records(_file(data.test_file, directory, TEST_FILE, "data.test_file"), TEST_KEYS)
    references = _read_references(data, directory, len(test))
    train, validation = [], []
    if need_train:
        pool = _read_records(_file(data.train_file, directory, TRAIN_FILE, "data.train_file"), TRAIN_KEYS)
        if data.validation_size >= len(pool):
            raise HwError(
                f"data.validation_size {data.validation_size} leaves none of the {len(pool)} training poems; "
                "choose a smaller validation size"
            )
        split = len(pool) - data.validation_size
        train, validation = pool[:split][: data.max_train_samples], pool[split:]
    limit = data.max_eval_samples
    return Poems(train, validation, test[:limit], references and references[:limit])


def _file(explicit: str | None, directory: Path | None, name: str, key: str) -> Path:
    if explicit is None and directory is None:
        raise HwError(
            f"hw tang needs the course's poem files, which are not on the Hugging Face Hub: pass --data DIR "
            f"(the folder holding {TRAIN_FILE}, {TEST_FILE} and optionally {GROUND_TRUTH_FILE}) "
            "or name each file: --set data.train_file=FILE --set data.test_file=FILE; --tiny runs on synthetic poems"
        )
    path = Path(explicit).expanduser() if explicit is not None else directory / name
    if not path.is_file():
        raise HwError(
            f"{key}: {str(path)!r} does not exist; pass --data DIR holding {name}, or --set {key}=FILE"
        )
    return path


def _read_records(path: Path, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """The items of a course JSON file; a malformed one is reported by index and missing key."""
    expected = f"give the course's JSON list of {{{', '.join(keys)}}} items"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HwError(
            f"{str(path)!r} is not a UTF-8 JSON file ({str(error).splitlines()[0]}); {expected}"
        ) from None
    if not isinstance(records, list) or not records:
        raise HwError(f"{str(path)!r} holds no list of items; {expected}")
    for index, record in enumerate(records):
        missing = [key for key in keys if not isinstance(record, dict) or key not in record]
        if missing:
            found = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            raise HwError(
                f"{str(path)!r} item {index} lacks {', '.join(map(repr, missing))} (it has: {found}); "
                f"every item needs {', '.join(keys)}"
            )
        for key in keys:
            if not isinstance(record[key], str):
                raise HwError(
                    f"{str(path)!r} item {index} field {key!r} is {type(record[key]).__name__} "
                    f"{json.dumps(record[key], ensure_ascii=False)[:40]}, not a string; write it as text"
                )
    return records


def _read_references(data: TangData, directory: Path | None, count: int) -> list[str] | None:
    """Ground-truth lines, one per test item; None when no ground-truth file is named or found."""
    if data.ground_truth_file is None and not (directory and (directory / GROUND_TRUTH_FILE).is_file()):
        log.info("no %s: scoring form, repetition and script only", GROUND_TRUTH_FILE)
        return None
    path = _file(data.ground_truth_file, directory, GROUND_TRUTH_FILE, "data.ground_truth_file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != count:
        raise HwError(
            f"{str(path)!r} has {len(lines)} lines but the test file has {count} items; "
            "give one ground-truth line per test item, in the same order"
        )
    return lines
