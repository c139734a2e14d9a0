"""`hw predict`: a finished run's model on the user's own input, with the run's settings; the run is only read.

Each homework's model loads through `hw.models` as its task loads it for scoring, and answers through the task's
own inference code: yelp's `classify`, qa's windows and post-processing, `speech_long.transcribe_long`, tang's
prompts and decoding, atc's ASR and the prompts of its `correct` stage.
"""

import dataclasses
import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw import config, config_layers, export, models, runner
from hw.errors import HwError

log = logging.getLogger(__name__)

HOMEWORKS = ("yelp", "qa", "whisper", "tang", "atc")


@dataclass(frozen=True)
class Request:
    """What the user asked: inputs (sentences, first lines or media files), qa's questions and context, atc's
    transcripts, options.

    Attributes:
        inputs: the command line's inputs (then, for yelp and tang, the lines of `file`).
        questions: qa: the questions asked about `context`.
        context: qa: the paragraph the answers are taken from (or `file`'s lines).
        texts: atc: transcripts to correct (then `file`'s lines).
        file: a UTF-8 text file of inputs, one per line; qa: the context.
        timestamps: whisper: also give each chunk's start and end.
        decoding: tang: `generation.*` settings that override the run's (`{"temperature": 0.7}`).
    """

    inputs: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    context: str | None = None
    texts: list[str] = field(default_factory=list)
    file: Path | None = None
    timestamps: bool = False
    decoding: dict[str, Any] = field(default_factory=dict)


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped.

    Raises:
        HwError: the file is missing or unreadable.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HwError(f"cannot read --file {str(path)!r} ({error}); give a UTF-8 text file") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def predict(run_dir: Path, request: Request) -> list[dict[str, Any]]:
    """One result per input (per question for qa), in input order.

    Raises:
        HwError: no finished run with a model there, a homework `hw predict` does not cover, or inputs that do
            not fit the run's homework; all before any weights load.
    """
    run = export.finished_run(run_dir)
    homework = run["homework"]
    if homework not in HOMEWORKS:
        raise HwError(
            f"run {str(run_dir)!r} is a hw {homework} run; hw predict covers {', '.join(HOMEWORKS)} runs"
        )
    request = _with_file(homework, request)
    _check(homework, request)
    folder = None if homework == "atc" else export.saved_model(run_dir)[1]  # atc's models are in its stages
    cfg = _run_config(run_dir, run, request.decoding)
    runner.build_tiny_assets(config.to_dict(cfg))  # a tiny base whose cache is gone is built again
    if homework == "atc":
        return _atc(run_dir, cfg, request)
    weights = models.resolve(cfg.model, str(folder))
    answer = {"yelp": _yelp, "qa": _qa, "whisper": _whisper, "tang": _tang}[homework]
    return answer(weights, cfg, request)


def _with_file(homework: str, request: Request) -> Request:
    """`request` with the lines of its file where the homework takes them: qa's context, atc's transcripts, or
    the inputs."""
    if request.file is None:
        return request
    lines = read_lines(request.file)
    if homework == "qa":
        return dataclasses.replace(request, context="\n".join(lines))
    if homework == "atc":
        return dataclasses.replace(request, texts=request.texts + lines)
    return dataclasses.replace(request, inputs=request.inputs + lines)


def _check(homework: str, request: Request) -> None:
    """Inputs that fit the homework, and media files that exist, before anything loads."""
    decoding = [f"--{key.replace('_', '-')}" for key in request.decoding]
    asks = {
        "inputs": bool(request.inputs),
        "--question": bool(request.questions),
        "--context": request.context is not None,
        "--text": bool(request.texts),
        "--timestamps": request.timestamps,
        **dict.fromkeys(decoding, True),
    }
    takes = {
        "yelp": ("inputs",),
        "qa": ("--question", "--context"),
        "whisper": ("inputs", "--timestamps"),
        "tang": ("inputs", *decoding),
        "atc": ("inputs", "--text"),
    }[homework]
    what = {
        "yelp": "sentences to classify (arguments or --file, one per line)",
        "qa": "--question (repeatable) and --context TEXT (or --file with the paragraph)",
        "whisper": "audio or video files to transcribe (--timestamps for their chunks' times)",
        "tang": "first lines of poems to continue (arguments or --file), and decoding flags",
        "atc": "audio files to transcribe (and correct), or transcripts to correct (--text, or --file)",
    }[homework]
    extra = [name for name, given in asks.items() if given and name not in takes]
    if extra:
        shown = "arguments or --file" if extra[0] == "inputs" else extra[0]
        raise HwError(f"a hw {homework} run does not take {shown}; it takes {what}")
    given = [asks[name] for name in takes if name in ("inputs", "--question", "--context", "--text")]
    if not (all(given) if homework == "qa" else any(given)):  # qa needs both; atc either
        raise HwError(f"nothing to predict: a hw {homework} run takes {what}")
    if homework in ("whisper", "atc"):
        missing = [path for path in request.inputs if not Path(path).is_file()]
        if missing:
            raise HwError(f"media file not found: {missing[0]}; give audio or video files")


def _run_config(run_dir: Path, run: dict[str, Any], decoding: dict[str, Any]) -> Any:
    """The run's own config (its config.yaml over its packaged variant), with `decoding` over `generation`."""
    from hw.cli import HOMEWORKS as COMMANDS

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise HwError(f"run {str(run_dir)!r} has no config.yaml; give a run written by hw {run['homework']}")
    homework = run["homework"]
    schema = getattr(importlib.import_module(f"hw.tasks.{homework}"), COMMANDS[homework][2])
    overrides = [f"generation.{key}={json.dumps(value)}" for key, value in decoding.items()]
    # The run's own flags (--eval-only, --checkpoint, --resume, --label), which its saved `run:` block repeats.
    options = config_layers.read_yaml(saved).get("run") or {"tiny": run["tiny"]}
    return config.load(schema, homework, run["variant"], config_file=saved, overrides=overrides, run=options)


def _yelp(weights: models.Weights, cfg: Any, request: Request) -> list[dict[str, Any]]:
    from hw.tasks.yelp import classify

    loaded = models.classifier(weights, cfg.data.label_names)
    loaded.processor.truncation_side = cfg.data.truncation_side
    model = models.for_inference(loaded.model, cfg.train.precision)
    labels = classify(model, loaded.processor, request.inputs, cfg.data.label_names)
    return [
        {"input": text, "label": label, "score": score}
        for text, (label, score) in zip(request.inputs, labels, strict=True)
    ]


def _qa(weights: models.Weights, cfg: Any, request: Request) -> list[dict[str, Any]]:
    """Answers as `hw qa` picks them: the context in overlapping windows, the best span over all windows; its
    score is the softmax probability among the n-best spans."""
    import datasets
    import torch

    from hw.tasks.qa import answers, to_features

    loaded = models.question_answering(weights, cfg.train.seed)
    tokenizer, model = loaded.processor, models.for_inference(loaded.model, cfg.train.precision)
    rows = [
        {"id": str(index), "question": question, "context": request.context, "answers": {"text": [], "answer_start": []}}
        for index, question in enumerate(request.questions)
    ]  # fmt: skip
    text = datasets.Value("string")
    spans = {"text": datasets.List(text), "answer_start": datasets.List(datasets.Value("int32"))}
    columns = datasets.Features({"id": text, "question": text, "context": text, "answers": spans})
    examples = datasets.Dataset.from_list(rows, features=columns)
    features = to_features(examples, tokenizer, cfg.data)
    names = [name for name in tokenizer.model_input_names if name in features.column_names]
    starts, ends = [], []
    size = cfg.train.per_device_eval_batch_size
    for first in range(0, len(features), size):
        batch = features.select_columns(names)[first : first + size]
        inputs = tokenizer.pad(batch, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            output = model(**inputs)
        starts += list(output.start_logits.float().cpu().numpy())
        ends += list(output.end_logits.float().cpu().numpy())
    windows = features.select_columns(["example_id", "offset_mapping"]).to_list()
    found = answers(rows, windows, starts, ends, cfg.data)
    results = []
    for row in rows:
        answer = found.predictions[row["id"]]
        best = next((entry for entry in found.nbest[row["id"]] if entry["text"] == answer), None)
        score = best["probability"] if best else 0.0
        results.append({"question": row["question"], "answer": answer, "score": score})
    return results


def _whisper(weights: models.Weights, cfg: Any, request: Request) -> list[dict[str, Any]]:
    from hw import audio, speech, speech_long

    loaded = models.whisper(weights, cfg.language, cfg.task, precision=cfg.train.precision)
    decoding = speech.Decoding(cfg.language, cfg.task, cfg.eval.batch_size, cfg.eval.max_new_tokens)
    results = []
    for path in request.inputs:
        samples = audio.extract_audio(path)
        transcript = speech_long.transcribe_long(
            loaded.model, loaded.processor, samples, decoding, request.timestamps
        )
        results.append({"input": path, "seconds": round(len(samples) / audio.TARGET_RATE, 3), **transcript})
    return results


def _tang(weights: models.Weights, cfg: Any, request: Request) -> list[dict[str, Any]]:
    """Continuations as `hw tang` generates its test poems: the course's instruction and prompt, the run's seed."""
    from transformers import set_seed

    from hw.generation import TANG_INSTRUCTION, build_prompt, extract_answer, generate_batch
    from hw.tasks.tang import generation_arguments, tang_format

    loaded = models.causal_lm(weights, cfg.quantization)
    tokenizer = loaded.processor
    records = [{"instruction": TANG_INSTRUCTION, "input": line} for line in request.inputs]
    prompts = [build_prompt(tokenizer, tang_format(cfg), record)[0] for record in records]
    set_seed(cfg.train.seed)
    arguments = generation_arguments(cfg.generation)
    raw = generate_batch(loaded.model, tokenizer, prompts, arguments, cfg.eval.batch_size)
    return [
        {"input": line, "prediction": extract_answer(text, echoes=[line]), "raw_output": text}
        for line, text in zip(request.inputs, raw, strict=True)
    ]


def _atc(run_dir: Path, cfg: Any, request: Request) -> list[dict[str, Any]]:
    """Audio transcribed by the run's fine-tuned ASR (the base, or --checkpoint, for an eval-only run), then
    every transcript corrected by each of the run's correctors as its `correct` stage corrects."""
    from hw import audio, runs, speech_long
    from hw.tasks import atc
    from hw.tasks.atc import asr, correct

    if request.texts and cfg.corrector is None:
        raise HwError(
            f"run {str(run_dir)!r} has no corrector (corrector: null); give audio files to transcribe"
        )
    asr_checkpoint, corrector_checkpoint = atc.checkpoints(cfg)
    inputs = atc.stage_inputs(cfg, asr_checkpoint, corrector_checkpoint)
    stages_dir = run_dir / "stages"
    trained = {
        name: str(stages_dir / name / "model") for name in ("asr_train", "corrector_train") if name in inputs
    }
    results: list[dict[str, Any]] = []
    if request.inputs:
        recognizer = inputs["transcribe"].recognizer
        loaded = asr.load_asr(recognizer, trained.get("asr_train", asr_checkpoint))
        for path in request.inputs:
            samples = audio.extract_audio(path)
            transcript = speech_long.transcribe_long(
                loaded.model, loaded.processor, samples, recognizer.decoding
            )
            results.append(
                {"input": path, "seconds": round(len(samples) / audio.TARGET_RATE, 3), **transcript}
            )
        del loaded  # the corrector's turn on the accelerator
    results += [{"input": text} for text in request.texts]
    if cfg.corrector is None:
        return results
    pairs = runs.read_jsonl(stages_dir / "pairs" / "pairs.jsonl") if cfg.corrector.rag_k else None
    hypotheses = [result.get("text", result["input"]) for result in results]
    checkpoint = trained.get("corrector_train", corrector_checkpoint)
    corrected = correct.corrections(inputs["correct"], hypotheses, pairs, checkpoint)
    for index, (result, hypothesis) in enumerate(zip(results, hypotheses, strict=True)):
        # As the correct stage scores them: the hypothesis itself where no answer could be extracted.
        result["corrected"] = {name: outputs[index][1] or hypothesis for name, outputs in corrected.items()}
    return results
