"""The bad-input matrix: each user mistake ends as one `hw: error:` line and exit code 2, and harms nothing.

Every case runs with a finished tiny run and its reports (`runs/`, `reports/`) in the working directory and
checks that not one byte of them changes and that nothing new appears there: a run stopped by a user error
leaves no run directory behind. Inputs are laid out in each case's own `work` folder.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from transformers import PreTrainedModel
from typer.testing import CliRunner

from hw import runs
from hw.cli import app
from tests.test_runs import FullDisk
from tests.test_secrets import FAKE_TOKEN

runner = CliRunner()


@dataclass(frozen=True)
class Case:
    """One bad input: the command line, the pinned error, and the files it needs."""

    name: str
    args: list[str]
    error: str
    """Regex searched in the error line; `{work}` stands for the case's input folder."""
    make: Callable[[Path], None] | None = None
    """Lays out the case's input files in `work`."""
    whisper_model: bool = False
    """Appends `model.name_or_path` (or `--model`) of an untrained tiny Whisper: no 95 s pretraining."""
    full_disk: bool = False
    """Every atomic write of `hw.runs` fails with ENOSPC, as on a full disk."""
    in_subprocess: bool = False
    """Run `python -m hw` for real, as a user's shell would."""
    logs: bool = False
    """Log lines of the work done so far may precede the error line on stderr."""
    loads_weights: bool = False
    """The mistake can only show once a model is loaded; every other case must fail before any weights load."""
    slow: bool = False
    """Builds tiny assets for minutes before the mistake shows: left to the full suite (`-m "not slow"`)."""
    hub_cache: bool = False
    """The case's `work/hub` is the Hugging Face cache (`HF_HUB_CACHE`)."""


def _write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def make(work: Path) -> None:
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return make


def _both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(work: Path) -> None:
        for maker in makers:
            maker(work)

    return make


def _saved_config(folder: str, config: dict, weights: str = "model.safetensors") -> Callable[[Path], None]:
    """A saved model or adapter folder as far as the checks before loading read it: its config and a weights file."""
    name = "adapter_config.json" if weights.startswith("adapter") else "config.json"
    return _both(_write(f"{folder}/{name}", json.dumps(config)), _write(f"{folder}/{weights}", _NO_TENSORS))


_NO_TENSORS = (2).to_bytes(8, "little") + b"{}"  # a whole safetensors file that holds no tensor
_TENSOR_HEADER = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'


def _torn_model(folder: str) -> Callable[[Path], None]:
    """A saved model cut short by a partial copy: 8 of the 16 bytes of its one tensor."""
    return _both(
        _write(
            f"{folder}/config.json", json.dumps({"architectures": ["DistilBertForSequenceClassification"]})
        ),
        _write(
            f"{folder}/model.safetensors",
            len(_TENSOR_HEADER).to_bytes(8, "little") + _TENSOR_HEADER + bytes(8),
        ),
    )


_TORN_MODEL = _torn_model("torn")
# The same model in the Hugging Face cache, cut short there (a disk that filled, a copied cache).
_TORN_CACHED_MODEL = _both(
    _write("hub/models--owner--model/refs/main", "0123abcd"),
    _torn_model("hub/models--owner--model/snapshots/0123abcd"),
)


def _whisper_adapter_on_another_base(work: Path) -> None:
    _saved_config("wide-whisper", {"model_type": "whisper", "d_model": 1024})(work)
    adapter = {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": str(work / "wide-whisper")}
    _saved_config("adapter", adapter, "adapter_model.safetensors")(work)


def _corrupt_audiofolder(work: Path) -> None:
    for split in ("train", "test"):
        _write(f"speech/{split}/metadata.csv", "file_name,transcription\nbroken.wav,你好\n")(work)
        _write(f"speech/{split}/broken.wav", b"RIFF\x00\x00not really a wave file")(work)


def _fragment_copy(work: Path) -> None:
    fragments = work / "reports" / "fragments"
    shutil.copytree(Path.cwd() / "reports" / "fragments", fragments)
    (work / "reports" / "summary.md").mkdir()  # a folder where the summary file must go


def _crashed_copy(work: Path) -> None:
    """`work/crashed`: the finished run's manifest as a run killed during training left it."""
    (finished,) = (Path.cwd() / "runs" / "yelp").iterdir()
    manifest = json.loads((finished / "run.json").read_text(encoding="utf-8"))
    _write("crashed/run.json", json.dumps({**manifest, "status": "running"}))(work)


SQUAD = json.dumps(
    {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "Denver won.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Who?",
                                "answers": [{"text": "Denver", "answer_start": 0}],
                            }
                        ],
                    }
                ],
            }
        ],
    }
)

CASES = [
    # --- configuration files and overrides
    Case(
        "config-missing",
        ["yelp", "--config", "{work}/missing.yaml"],
        r"config file not found: '{work}/missing\.yaml'; pass an existing YAML file",
    ),
    Case(
        "config-is-a-folder",
        ["yelp", "--config", "{work}"],
        r"config file '{work}' is a folder; pass a YAML file to --config",
    ),
    Case(
        "config-malformed-yaml",
        ["yelp", "--config", "{work}/bad.yaml"],
        r"config file '{work}/bad\.yaml' is not valid YAML at line 3 \(expected ',' or '\]', but got '<stream end>'\); fix the syntax",
        _write("bad.yaml", "train:\n  learning_rate: [1e-5\n"),
    ),
    Case(
        "config-not-utf8",
        ["yelp", "--config", "{work}/latin1.yaml"],
        r"config file '{work}/latin1\.yaml' is not UTF-8 text.*re-save it as UTF-8",
        _write("latin1.yaml", "model:\n  name_or_path: caf\xe9\n".encode("latin-1")),
    ),
    Case(
        "config-not-a-mapping",
        ["yelp", "--config", "{work}/list.yaml"],
        r"config file '{work}/list\.yaml' must hold a mapping of keys to values, not list",
        _write("list.yaml", "- a\n- b\n"),
    ),
    Case(
        "config-unknown-key",
        ["yelp", "--config", "{work}/typo.yaml"],
        r"train\.lerning_rate: unknown key; did you mean train\.learning_rate\?",
        _write("typo.yaml", "train:\n  lerning_rate: 1.0e-5\n"),
    ),
    Case(
        "set-unknown-key",
        ["yelp", "--set", "data.max_lenght=64"],
        r"data\.max_lenght: unknown key; did you mean data\.max_length\?",
    ),
    Case(
        "set-not-key-value",
        ["yelp", "--set", "train.learning_rate"],
        r"--set expects KEY=VALUE, got 'train\.learning_rate'",
    ),
    Case(
        "set-mistyped-value",
        ["yelp", "--set", "train.learning_rate=fast"],
        r"train\.learning_rate: expected float, got 'fast'",
    ),
    Case(
        "set-token-in-config",
        ["yelp", "--set", f"model.hub_token={FAKE_TOKEN}"],
        r"model\.hub_token: unknown key; a Hub token is read only from the HF_TOKEN environment variable",
    ),
    Case(
        "set-out-of-range-epochs",
        ["yelp", "--set", "train.num_train_epochs=0"],
        r"train\.num_train_epochs: 0\.0 must be above 0",
    ),
    Case(
        "set-out-of-range-length",
        ["yelp", "--set", "data.max_length=0"],
        r"data\.max_length: 0 must be at least 1",
    ),
    Case(
        "set-not-a-choice",
        ["yelp", "--set", "train.precision=fp8"],
        r"train\.precision: 'fp8' is not one of 'auto', 'fp32', 'fp16', 'bf16'",
    ),
    Case(
        "lora-dropout-out-of-range",
        ["yelp", "--variant", "imdb-lora", "--set", "lora.dropout=1.5"],
        r"lora\.dropout: 1\.5 must be in \[0, 1\)",
    ),
    Case(
        "unknown-variant",
        ["yelp", "--variant", "yelp-huge"],
        r"unknown variant 'yelp-huge' for hw yelp; choose one of: yelp, imdb-lora, yelp-full",
    ),
    Case(
        "samples-not-a-number",
        ["yelp", "--max-train-samples", "lots"],
        r"--max-train-samples must be a whole number or 'all', got 'lots'",
    ),
    Case(
        "qa-doc-stride-out-of-range",
        ["qa", "--set", "data.doc_stride=400"],
        r"data\.doc_stride: 400 must be at least 0 and below max_length",
    ),
    Case(
        "qa-squad-v2-on-v1-data",
        ["qa", "--squad-v2"],
        r"squad_v2: on, but dataset 'squad' is SQuAD v1\.1; also --set data\.dataset=squad_v2",
    ),
    Case(
        "tang-temperature-zero",
        ["tang", "--tiny", "--temperature", "0"],
        r"generation\.temperature: 0\.0 must be above 0",
    ),
    Case(
        "tang-sweep-malformed",
        ["tang", "--tiny", "--sweep", "temperature"],
        r"--sweep expects SETTING=V1,V2,\.\.\., got 'temperature'",
    ),
    # --- languages
    Case(
        "whisper-unsupported-lang",
        ["whisper", "--lang", "de"],
        r"--lang 'de' is not supported by hw whisper; choose one of: fr, zh",
    ),
    Case(
        "whisper-unknown-language-code",
        ["whisper", "--set", "language=klingon"],
        r"language: 'klingon' is not a Whisper language code",
    ),
    Case(
        "whisper-unknown-normalizer",
        ["whisper", "--set", "eval.normalizer=fancy"],
        r"eval\.normalizer: 'fancy' is not one of none, basic, zh",
    ),
    Case(
        "whisper-dataset-unknown-language",
        ["whisper-dataset", "{work}/talk.wav", "--out", "{work}/out", "--lang", "klingon"],
        r"--lang 'klingon' is not a Whisper language; e\.g\. en, zh",
        _write("talk.wav", b""),
    ),
    # --- models and checkpoints
    Case(
        "model-path-missing",
        ["yelp", "--tiny", "--set", "model.name_or_path=./no/such/model"],
        r"model\.name_or_path: '\./no/such/model' does not exist",
    ),
    Case(
        "hub-model-offline",
        ["yelp", "--set", "model.name_or_path=nobody/no-such-model"],
        r"model 'nobody/no-such-model' could not be loaded from the Hugging Face Hub \(not in the local cache, and the Hub is unreachable or HF_HUB_OFFLINE=1\); use `hf download nobody/no-such-model --local-dir DIR`",
        in_subprocess=True,
    ),
    Case(
        "hub-dataset-offline",
        ["yelp", "--tiny", "--set", "data.dataset=nobody/no-such-data"],
        r"dataset 'nobody/no-such-data' could not be loaded from the Hugging Face Hub",
    ),
    Case(
        "checkpoint-not-a-model",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/notes"],
        r"--checkpoint: '{work}/notes' is not a saved model \(no config\.json or adapter_config\.json in it\)",
        _write("notes/readme.txt", "my notes"),
    ),
    Case(
        "checkpoint-without-weights",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/empty-model"],
        r"--checkpoint: '{work}/empty-model' holds no weights \(no \*\.safetensors or \*\.bin model file\)",
        _write("empty-model/config.json", '{"model_type": "bert"}'),
    ),
    Case(
        "checkpoint-corrupt-config",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/broken"],
        r"--checkpoint: '{work}/broken/config\.json' is not valid JSON",
        _both(_write("broken/config.json", "{oops"), _write("broken/model.safetensors", b"x")),
    ),
    Case(
        "checkpoint-truncated-weights",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/torn"],
        r"--checkpoint '{work}/torn': {work}/torn/model\.safetensors is damaged \(78 bytes where its header "
        r"says 86\); copy or save the weights again, or give another copy",
        _TORN_MODEL,
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "base-model-truncated-in-hub-cache",
        ["yelp", "--tiny", "--set", "model.name_or_path=owner/model"],
        r"model\.name_or_path 'owner/model': in the Hugging Face cache, but {work}/hub/models--owner--model/snapshots/"
        r"0123abcd/model\.safetensors is damaged \(78 bytes where its header says 86\); download it again: hf "
        r"download owner/model --force-download",
        _TORN_CACHED_MODEL,
        hub_cache=True,
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "base-model-truncated-weights",
        ["yelp", "--tiny", "--set", "model.name_or_path={work}/torn"],
        r"model\.name_or_path '{work}/torn': {work}/torn/model\.safetensors is damaged \(78 bytes where its "
        r"header says 86\); copy or save the weights again, or give another copy",
        _TORN_MODEL,
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "checkpoint-of-another-homework",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/qa-model"],
        r"--checkpoint '{work}/qa-model' holds a DistilBertForQuestionAnswering; hw yelp needs a "
        r"…ForSequenceClassification \(give a model this homework saved\)",
        _saved_config(
            "qa-model", {"model_type": "distilbert", "architectures": ["DistilBertForQuestionAnswering"]}
        ),
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "checkpoint-classifier-into-qa",
        ["qa", "--tiny", "--eval-only", "--checkpoint", "{work}/yelp-model"],
        r"--checkpoint '{work}/yelp-model' holds a DistilBertForSequenceClassification; hw qa needs a …ForQuestionAnswering",
        _saved_config(
            "yelp-model",
            {"model_type": "distilbert", "architectures": ["DistilBertForSequenceClassification"]},
        ),
        logs=True,  # the tiny questions are read before the model
    ),
    Case(
        "checkpoint-adapter-of-another-task",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{work}/tang-adapter"],
        r"--checkpoint '{work}/tang-adapter' holds a PEFT adapter of task_type CAUSAL_LM; hw yelp needs task_type SEQ_CLS",
        _saved_config(
            "tang-adapter",
            {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny:tang-llama"},
            "adapter_model.safetensors",
        ),
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "model-of-another-family",
        ["yelp", "--tiny", "--set", "model.name_or_path={work}/whisper"],
        r"model\.name_or_path '{work}/whisper' holds a whisper model, which cannot be built into a "
        r"…ForSequenceClassification; hw yelp needs a base that can",
        _saved_config(
            "whisper", {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"]}
        ),
        logs=True,  # datasets may report reading the tiny reviews, read before the model
    ),
    Case(
        "whisper-adapter-on-another-base",
        ["whisper", "--tiny", "--eval-only", "--checkpoint", "{work}/adapter"],
        r"--checkpoint '{work}/adapter' is an adapter trained on base '{work}/wide-whisper', but model\.name_or_path "
        r"is '.*' \(d_model 1024 there, 64 here\); --set model\.name_or_path={work}/wide-whisper",
        _whisper_adapter_on_another_base,
        whisper_model=True,
        logs=True,  # the tiny speech is built first, and the log names the base the adapter is scored on
    ),
    Case(
        "lora-target-missing",
        ["yelp", "--tiny", "--variant", "imdb-lora", "--set", "lora.target_modules=[q_lin, q_proj]"],
        r"LoRA target_modules 'q_proj': no such module in DistilBertForSequenceClassification, whose linear modules "
        r"are q_lin, k_lin, v_lin, out_lin, lin1, lin2, pre_classifier, classifier; did you mean 'q_lin'\?",
        loads_weights=True,  # the model's own module names are the list to check against
        logs=True,  # the tiny IMDB assets are built and read before the model
    ),
    Case(
        "max-length-above-positions",
        ["yelp", "--tiny", "--set", "data.max_length=4096"],
        r"data\.max_length: 4096 is above the 512 positions of 'tiny:bert-cased' \(max_position_embeddings\); "
        r"set data\.max_length to at most 512",
    ),
    Case(
        "qa-max-length-above-positions",
        ["qa", "--tiny", "--set", "data.max_length=1024"],
        r"data\.max_length: 1024 is above the 512 positions of 'tiny:distilbert-qa'",
    ),
    Case(
        "checkpoint-missing",
        ["qa", "--tiny", "--eval-only", "--checkpoint", "{work}/nowhere"],
        r"--checkpoint '{work}/nowhere' does not exist",
    ),
    # --- datasets
    Case(
        "dataset-missing-columns",
        ["yelp", "--tiny", "--set", "data.dataset={work}/reviews"],
        r"dataset '{work}/reviews' lacks column\(s\) text, label \(it has: review, stars\)",
        _both(
            _write("reviews/train.csv", "review,stars\ngood,5\n"),
            _write("reviews/test.csv", "review,stars\nbad,1\n"),
        ),
        logs=True,  # datasets shows its progress reading the files
    ),
    Case(
        "dataset-labels-1-based",
        ["yelp", "--tiny", "--set", "data.dataset={work}/stars"],
        r"'label' of the train split of '{work}/stars' holds label\(s\) 5 outside 0\.\.4 \(one per data\.label_names\); "
        r"labels must be 0-based class indices \(a 1-based copy needs label - 1\)",
        _both(
            _write("stars/train.csv", "text,label\ngreat,5\nbad,1\n"),
            _write("stars/test.csv", "text,label\nok,3\n"),
        ),
        logs=True,  # datasets shows its progress reading the files
    ),
    Case(
        "dataset-is-a-file",
        ["yelp", "--tiny", "--set", "data.dataset={work}/reviews.csv"],
        r"data\.dataset: '{work}/reviews\.csv' is a file; give the folder that holds train/test files",
        _write("reviews.csv", "text,label\ngood,1\n"),
    ),
    Case(
        "dataset-empty",
        ["yelp", "--tiny", "--set", "data.dataset={work}/empty"],
        r"data\.dataset: '{work}/empty/train\.csv' in dataset '{work}/empty' holds no examples; give every split file at least one",
        _both(_write("empty/train.csv", "text,label\n"), _write("empty/test.csv", "text,label\ngood,1\n")),
    ),
    Case(
        "dataset-missing-split",
        ["yelp", "--tiny", "--set", "data.eval_split=dev"],
        r"data\.eval_split: split 'dev' is not in dataset 'tiny:yelp' \(it has: train, test\)",
    ),
    Case(
        "qa-dataset-missing-answers",
        ["qa", "--tiny", "--set", "data.dataset={work}/questions"],
        r"dataset '{work}/questions' lacks column\(s\) answers",
        _both(
            _write("questions/train.jsonl", '{"id": "1", "context": "c", "question": "q"}\n'),
            _write("questions/validation.jsonl", '{"id": "2", "context": "c", "question": "q"}\n'),
        ),
        logs=True,  # datasets shows its progress reading the files
    ),
    Case(
        "whisper-metadata-missing-column",
        ["whisper", "--tiny", "--set", "data.dataset={work}/speech"],
        r"{work}/speech/train/metadata\.csv lacks column\(s\) transcription \(it has: file_name, text\)",
        _write("speech/train/metadata.csv", "file_name,text\na.wav,hi\n"),
        whisper_model=True,
    ),
    Case(
        "whisper-corrupt-audio",
        ["whisper", "--tiny", "--set", "data.dataset={work}/speech"],
        r"no usable clip in the train split of '{work}/speech' \(1 undecodable, first: broken\.wav\)",
        _corrupt_audiofolder,
        whisper_model=True,
        logs=True,  # each skipped clip is logged with its reason
    ),
    Case(
        "atc-unknown-stage",
        ["atc", "--tiny", "--stage", "nonsense"],
        r"stages\.only: 'nonsense' is not a stage; choose one of: asr_train, transcribe",
    ),
    Case(
        "atc-unknown-from-stage",
        ["atc", "--tiny", "--from-stage", "decode"],
        r"stages\.start: 'decode' is not a stage; choose one of: asr_train",
    ),
    Case(
        "atc-corrector-checkpoint-missing",
        ["atc", "--tiny", "--set", "corrector.checkpoint=/no/such/adapter"],
        r"corrector\.checkpoint '/no/such/adapter' does not exist",
        logs=True,  # with a fresh cache, building the tiny assets is logged
        slow=True,  # every tiny asset the config names (pretrained Whisper and corrector bases) is built first
    ),
    Case(
        "atc-eval-set-missing",
        ["atc", "--tiny", "--set", "data.eval_sets=[{{name: atco2, dataset: {work}/no-such-atco2}}]"],
        r"no-such-atco2'",
        logs=True,  # the tiny training set is built (and checked) first
        slow=True,  # after every tiny asset the config names (pretrained Whisper and corrector bases)
    ),
    Case("doctor-unknown-homework", ["doctor", "cooking"], r"'cooking'.*yelp, qa, whisper, atc, tang"),
    Case(
        "doctor-unknown-key",
        ["doctor", "yelp", "--set", "train.lerning_rate=1e-5"],
        r"train\.lerning_rate: unknown key; did you mean train\.learning_rate\?",
    ),
    Case(
        "tang-no-data",
        ["tang"],
        r"hw tang needs the course's poem files, which are not on the Hugging Face Hub: pass --data DIR",
    ),
    Case(
        "tang-data-folder-missing",
        ["tang", "--data", "{work}/poems"],
        r"data\.test_file: '{work}/poems/Tang_testing_data\.json' does not exist",
    ),
    Case(
        "tang-not-json",
        ["tang", "--data", "{work}/poems"],
        r"'{work}/poems/Tang_testing_data\.json' is not a UTF-8 JSON file",
        _write("poems/Tang_testing_data.json", "instruction: write\n"),
    ),
    Case(
        "tang-empty-list",
        ["tang", "--data", "{work}/poems"],
        r"'{work}/poems/Tang_testing_data\.json' holds no list of items",
        _write("poems/Tang_testing_data.json", "[]"),
    ),
    Case(
        "tang-item-missing-key",
        ["tang", "--data", "{work}/poems"],
        r"'{work}/poems/Tang_testing_data\.json' item 0 lacks 'input' \(it has: instruction\)",
        _write("poems/Tang_testing_data.json", '[{"instruction": "續寫"}]'),
    ),
    Case(
        "tang-field-not-a-string",
        ["tang", "--data", "{work}/poems"],
        r"'{work}/poems/Tang_testing_data\.json' item 1 field 'input' is list \[\"床前明月光\"\], not a string",
        _write(
            "poems/Tang_testing_data.json",
            '[{"instruction": "續寫", "input": "a"}, {"instruction": "續寫", "input": ["床前明月光"]}]',
        ),
    ),
    # --- where a run writes
    Case(
        "output-dir-under-a-file",
        ["yelp", "--tiny", "--output-dir", "{work}/taken/run"],
        r"cannot write to run directory '{work}/taken/run' \(Not a directory\); choose a writable --output-dir",
        _write("taken", "a regular file"),
    ),
    Case(
        "reports-dir-under-a-file",
        ["yelp", "--tiny", "--reports-dir", "{work}/taken/reports"],
        r"cannot write to report folder '{work}/taken/reports/fragments' \(Not a directory\); choose a writable --reports-dir",
        _write("taken", "a regular file"),
    ),
    Case(
        "output-dir-finished-run",
        ["yelp", "--tiny", "--output-dir", "{finished}"],
        r"--output-dir '{finished}' already holds a finished run; choose another directory",
    ),
    Case(
        "disk-full",
        ["yelp", "--tiny"],
        r"cannot write 'runs/yelp/yelp-tiny-\d{{8}}-\d{{6}}/run\.json' \(No space left on device; [\d.]+ MB free\); "
        r"free space or point --output-dir",
        full_disk=True,
    ),
    Case(
        "resume-nothing",
        ["yelp", "--resume"],
        r"--resume: no earlier 'yelp' run under 'runs/yelp'; start one without --resume",
    ),
    Case(
        "resume-newest-finished",
        ["yelp", "--tiny", "--resume"],
        r"run 'runs/yelp/yelp-tiny-\d{{8}}-\d{{6}}' is finished; nothing to resume \(start a new run, or "
        r"--eval-only --checkpoint runs/yelp/yelp-tiny-\d{{8}}-\d{{6}}\)",
    ),
    Case(
        "resume-finished-output-dir",
        ["yelp", "--tiny", "--resume", "--output-dir", "{finished}"],
        r"run '{finished}' is finished; nothing to resume",
    ),
    Case(
        "resume-output-dir-missing",
        ["yelp", "--tiny", "--resume", "--output-dir", "{work}/no-such-run"],
        r"--resume --output-dir '{work}/no-such-run': no such run directory; --resume only continues an existing run",
    ),
    Case(
        "resume-another-homework",
        ["qa", "--tiny", "--resume", "--output-dir", "{finished}"],
        r"run '{finished}' is a yelp \(variant yelp, tiny\) run, not qa \(variant qa, tiny\); resume it with hw yelp",
    ),
    Case(
        "resume-another-variant",
        ["yelp", "--tiny", "--variant", "imdb-lora", "--resume", "--output-dir", "{finished}"],
        r"run '{finished}' is a yelp \(variant yelp, tiny\) run, not yelp \(variant imdb-lora, tiny\)",
    ),
    Case(
        "resume-other-training-settings",
        [
            "yelp",
            "--tiny",
            "--resume",
            "--output-dir",
            "{work}/crashed",
            "--max-train-samples",
            "10",
            "--max-eval-samples",
            "32",
        ],
        r"run '{work}/crashed' was trained with other settings \(data\.max_train_samples: 64 in the run, 10 now\); "
        r"resume it with the same options",
        _crashed_copy,
    ),
    Case(
        "new-run-over-an-unfinished-one",
        ["yelp", "--tiny", "--output-dir", "{work}/crashed"],
        r"--output-dir '{work}/crashed' holds an unfinished yelp \(variant yelp, tiny\) run; continue it with "
        r"--resume --output-dir {work}/crashed",
        _crashed_copy,
    ),
    Case(
        "eval-only-resume",
        ["yelp", "--tiny", "--eval-only", "--resume"],
        r"invalid configuration: run\.resume: --eval-only scores weights in a new run; drop --resume",
    ),
    Case(
        "eval-only-into-the-scored-run",
        ["yelp", "--tiny", "--eval-only", "--checkpoint", "{finished}", "--output-dir", "{finished}"],
        r"--output-dir '{finished}' holds the weights --checkpoint scores; an eval-only run writes a new run",
    ),
    Case(
        "atc-stage-without-resume",
        ["atc", "--tiny", "--stage", "score"],
        r"invalid configuration: stages: --stage/--from-stage belong to an existing run; add --resume \[--output-dir RUN\]",
    ),
    Case(
        "atc-from-stage-without-resume",
        ["atc", "--tiny", "--from-stage", "correct"],
        r"stages: --stage/--from-stage belong to an existing run",
    ),
    # --- report and smoke
    Case(
        "report-no-fragments",
        ["report", "--reports-dir", "{work}/reports"],
        r"no report fragments in '{work}/reports/fragments'; run a homework first",
    ),
    Case(  # a foreign file beside whole fragments is skipped with a warning: tests/test_report.py
        "report-only-foreign-files",
        ["report", "--reports-dir", "{work}/reports"],
        r"no report fragments in '{work}/reports/fragments' \(skipped: '{work}/reports/fragments/notes\.md' "
        r"\(not an hw report fragment: no hw-fragment header; .*\); run a homework first",
        _write("reports/fragments/notes.md", "# my notes\n"),
    ),
    Case(
        "report-summary-unwritable",
        ["report", "--reports-dir", "{work}/reports"],
        r"cannot write '{work}/reports/summary\.md' \(Is a directory\)",
        _fragment_copy,
    ),
    Case(
        "smoke-unknown-homework",
        ["smoke", "--homework", "cooking"],
        r"--homework 'cooking' is not a homework; choose from: yelp, qa, whisper, atc, tang",
    ),
    Case(
        "smoke-workdir-under-a-file",
        ["smoke", "--homework", "yelp", "--workdir", "{work}/taken"],
        r"cannot write to run directory '{work}/taken/runs/yelp/yelp-tiny-\d+-\d+' \(Not a directory\)",
        _write("taken", "a regular file"),
    ),
    # --- score squad / score asr
    Case(
        "squad-data-missing",
        ["score", "squad", "{work}/dev.json", "{work}/predictions.json"],
        r"SQuAD data file {work}/dev\.json does not exist or is not a file",
    ),
    Case(
        "squad-predictions-not-json",
        ["score", "squad", "{work}/dev.json", "{work}/predictions.json"],
        r"predictions file {work}/predictions\.json is not valid JSON \(.*\); pass a JSON file",
        _both(_write("dev.json", SQUAD), _write("predictions.json", "q1: Denver\n")),
    ),
    Case(
        "squad-predictions-array",
        ["score", "squad", "{work}/dev.json", "{work}/predictions.json"],
        r"predictions file {work}/predictions\.json is not a JSON object of question id → answer text \(got a JSON array\)",
        _both(_write("dev.json", SQUAD), _write("predictions.json", '["Denver"]')),
    ),
    Case(
        "squad-data-not-squad",
        ["score", "squad", "{work}/dev.json", "{work}/predictions.json"],
        r"SQuAD data file {work}/dev\.json has the wrong layout: data should be a JSON array, found a JSON number",
        _both(_write("dev.json", '{"data": 5}'), _write("predictions.json", "{}")),
    ),
    Case(
        "asr-file-missing",
        ["score", "asr", "{work}/samples.jsonl"],
        r"transcript file not found: {work}/samples\.jsonl",
    ),
    Case(
        "asr-unsupported-suffix",
        ["score", "asr", "{work}/samples.txt"],
        r"cannot read {work}/samples\.txt: suffix '\.txt' is not one of \.csv, \.jsonl",
        _write("samples.txt", "a b\n"),
    ),
    Case(
        "asr-missing-column",
        ["score", "asr", "{work}/samples.csv", "--hyp-col", "prediction"],
        r"{work}/samples\.csv: no column 'prediction' \(--hyp-col\); available: hypothesis, reference",
        _write("samples.csv", "hypothesis,reference\na,b\n"),
    ),
    Case(
        "asr-unknown-normalizer",
        ["score", "asr", "{work}/samples.csv", "--normalize", "fancy"],
        r"unknown normalizer 'fancy'; allowed: none, basic, zh",
        _write("samples.csv", "hypothesis,reference\na,b\n"),
    ),
    Case(
        "asr-jsonl-not-objects",
        ["score", "asr", "{work}/samples.jsonl"],
        r"{work}/samples\.jsonl: line 1 is not a JSON object \(got a list\); write one object per line",
        _write("samples.jsonl", '["a", "b"]\n'),
    ),
    Case(
        "asr-not-utf8",
        ["score", "asr", "{work}/samples.csv"],
        r"cannot read {work}/samples\.csv: it is not UTF-8 text",
        _write("samples.csv", "hypothesis,reference\ncaf\xe9,caf\xe9\n".encode("latin-1")),
    ),
    # --- whisper-dataset
    Case(
        "whisper-dataset-media-missing",
        ["whisper-dataset", "{work}/talk.mp4", "--out", "{work}/out"],
        r"media file not found: {work}/talk\.mp4; check the path",
    ),
    Case(
        "whisper-dataset-test-ratio",
        ["whisper-dataset", "{work}/talk.wav", "--out", "{work}/out", "--test-ratio", "1.5"],
        r"--test-ratio 1\.5 is outside \[0, 1\)",
        _write("talk.wav", b""),
    ),
    Case(
        "whisper-dataset-overlap",
        ["whisper-dataset", "{work}/talk.wav", "--out", "{work}/out", "--overlap-seconds", "12"],
        r"cannot cut 10\.0 s segments overlapping by 12\.0 s; the segment must be positive and the overlap at least 0 and shorter",
        _write("talk.wav", b""),
    ),
    Case(
        "whisper-dataset-opencc",
        ["whisper-dataset", "{work}/talk.wav", "--out", "{work}/out", "--opencc", "x2y"],
        r"--opencc 'x2y' is not an OpenCC conversion; allowed: ",
        _write("talk.wav", b""),
    ),
    Case(
        "whisper-dataset-model-offline",
        ["whisper-dataset", "{work}/talk.wav", "--out", "{work}/out", "--model", "nobody/no-whisper"],
        r"model 'nobody/no-whisper' could not be loaded from the Hugging Face Hub",
        _write("talk.wav", b""),
    ),
    Case(
        "whisper-dataset-corrupt-media",
        [
            "whisper-dataset",
            "{work}/talk.mp4",
            "--out",
            "{work}/out",
            "--segment-seconds",
            "3",
            "--overlap-seconds",
            "1",
        ],
        r"none of the 1 media could be labelled \(first: cannot decode media file {work}/talk\.mp4",
        _write("talk.mp4", b"\x00\x00\x00\x18ftypmp42 truncated"),
        whisper_model=True,
        loads_weights=True,  # media are decoded one by one after the labelling model loads
        logs=True,  # each failed medium is logged with its reason
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file (by content hash) and every folder under `root`."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory, offline_session: Path) -> tuple[Path, Path]:
    """A working directory holding one finished tiny yelp run and its reports (fragment, figure, summary),
    and that run's directory."""
    home = tmp_path_factory.mktemp("home")
    previous = Path.cwd()
    os.chdir(home)
    try:
        trained = runner.invoke(
            app, ["yelp", "--tiny", "--max-train-samples", "64", "--max-eval-samples", "32"]
        )
        assert trained.exit_code == 0, trained.output
        assert runner.invoke(app, ["report"]).exit_code == 0
    finally:
        os.chdir(previous)
    (finished,) = (home / "runs" / "yelp").iterdir()
    return home, finished


@pytest.fixture(scope="session")
def untrained_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Whisper with the tiny processor: loads like the real one, without the tiny asset's pretraining."""
    from hw.tiny import whisper

    directory = tmp_path_factory.mktemp("untrained-whisper")
    processor = whisper.build_processor()
    processor.save_pretrained(directory)
    whisper.untrained_model(processor.tokenizer).save_pretrained(directory)
    return directory


def _no_weights(cls, *args, **kwargs):
    raise AssertionError(f"{cls.__name__} weights loaded before the bad input was reported")


def _invoke(case: Case, args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command line; a traceback, if any, appears in stderr."""
    if case.in_subprocess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        done = subprocess.run(
            [sys.executable, "-m", "hw", *args], capture_output=True, text=True, env=env, timeout=120
        )
        return done.returncode, done.stdout, done.stderr
    if case.full_disk:
        monkeypatch.setattr(runs, "os", FullDisk())
    if not case.loads_weights:
        monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(_no_weights))
    result = runner.invoke(app, args)
    error = result.exception
    trace = "" if error is None or isinstance(error, SystemExit) else f"Traceback: {error!r}"
    return result.exit_code, result.stdout, result.stderr + trace


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else []) for case in CASES],
)
def test_bad_input(
    case: Case, home: tuple[Path, Path], tmp_path: Path, request, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, finished = home
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(home)
    if case.make:
        case.make(work)
    if case.hub_cache:
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(work / "hub"))
    args = [arg.format(work=work, finished=finished) for arg in case.args]
    if case.whisper_model:
        model = str(request.getfixturevalue("untrained_whisper"))
        args += (
            ["--model", model] if args[0] == "whisper-dataset" else ["--set", f"model.name_or_path={model}"]
        )
    before = _snapshot(home)

    code, stdout, stderr = _invoke(case, args, monkeypatch)

    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("hw: error:")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr
    assert case.logs or stderr == errors[0] + "\n", stderr
    pattern = case.error.format(work=re.escape(str(work)), finished=re.escape(str(finished)))
    assert re.search(pattern, errors[0]), errors[0]
    assert FAKE_TOKEN not in stdout + stderr
    after = _snapshot(home)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, f"a failed command changed, added or removed files beside the finished run: {changed}"
    if "--out" in args:  # whisper-dataset: a command stopped by a user error leaves no dataset folder
        assert not (work / "out").exists()
