"""Every fixed word of the report, in English and Simplified Chinese, and how each metric is printed."""

from typing import NamedTuple

LOCALES = ("en", "zh")


class Column(NamedTuple):
    """A metric key's title in each locale and its kind, which sets how its numbers are printed."""

    en: str
    zh: str
    kind: str
    """`epoch`, `loss`, `accuracy` (3-4 decimals), `points` (0-100, 2 decimals), `rate` (WER/CER as %),
    `share` (a fraction as %), `ratio` (0-1 score, 3 decimals), `seconds` or `count`."""


COLUMNS = {
    "epoch": Column("Epoch", "轮次", "epoch"),
    "training_loss": Column("Training loss", "训练损失", "loss"),
    "validation_loss": Column("Validation loss", "验证损失", "loss"),
    "eval_loss": Column("Validation loss", "验证损失", "loss"),
    "accuracy": Column("Accuracy", "准确率", "accuracy"),
    "exact_match": Column("Exact match (EM)", "完全匹配 (EM)", "points"),
    "f1": Column("F1", "F1", "points"),
    "cer": Column("CER", "字错误率 (CER)", "rate"),
    "wer": Column("WER", "词错误率 (WER)", "rate"),
    "cer_orthographic": Column("CER, raw text", "CER（原始文本）", "rate"),
    "wer_orthographic": Column("WER, raw text (zh: whole sentences as words)", "WER（原始文本）", "rate"),
    "sentence_error_rate": Column("Sentences with an error", "有错误的句子", "share"),
    "form": Column("Right form (clauses × characters)", "格式正确", "share"),
    "char_f1": Column("Character F1", "字 F1", "ratio"),
    "chrf": Column("chrF", "chrF", "ratio"),
    "repetition": Column("Repeated characters", "重复字比例", "share"),
    "traditional_share": Column("Traditional characters", "繁体字比例", "share"),
    "distinct_1": Column("Distinct-1", "Distinct-1", "ratio"),
    "distinct_2": Column("Distinct-2", "Distinct-2", "ratio"),
    "mean_utterance_wer": Column("Mean utterance WER", "逐句 WER 平均", "rate"),
}
# Titles of the tasks' own tables (hw/tasks) → kind of their numbers, where it is not a plain count.
TABLE_COLUMN_KINDS = {
    "WER": "rate",
    "CER": "rate",
    "Mean utterance WER": "rate",
    "Sentence error rate": "share",
    "Better": "share",
    "Worse": "share",
    "Unchanged": "share",
    "Seconds when computed": "seconds",
}
# The evaluation sets, ASR systems and correctors of `hw atc`'s metric keys `set/asr/corrector/metric`.
ATC_PARTS = {
    "atcosim": "ATCOSIM",
    "atco2": "ATCO2",
    "zero_shot": "zero-shot Whisper",
    "fine_tuned": "fine-tuned",
    "none": "no corrector",
    "base": "base LLM",
    "rag": "LLM + examples",
}

LABELS = {
    "summary": ("Weekly summary", "每周总结"),
    "contents": ("Contents", "目录"),
    "glance": ("Results at a glance", "结果一览"),
    "homework": ("Homework", "作业"),
    "metric": ("Metric", "指标"),
    "course": ("Course", "课程"),
    "homework_report": ("Homework report", "作业报告"),
    "this_run": ("This run", "本次运行"),
    "difference": ("Difference", "差值"),
    "vs_homework": ("vs homework report", "相对作业报告"),
    "vs_course": ("vs course", "相对课程"),
    "source": ("Source", "来源"),
    "run": ("run", "运行"),
    "tiny_mark": ("TINY, not a real result", "TINY，非真实结果"),
    "tiny_banner": (
        "> **Tiny offline preset — not a real result.** A tiny random model trained on synthetic data, to show "
        "that the pipeline runs and learns; its numbers say nothing about the homework.",
        "> **离线微型预设——不是真实结果。** 用合成数据训练的微型随机模型，只说明流程能运行并能学习；"
        "其数字与作业无关。",
    ),
    "eval_only_of": ("eval-only of", "仅评估："),
    "base_model": ("the base model", "基础模型"),
    "seed": ("seed", "种子"),
    "older_runs": (
        "older run(s) not shown: `hw report --runs all`",
        "个较早的运行未显示：`hw report --runs all`",
    ),
    "details": ("Details of run", "运行详情"),
    "model": ("Model", "模型"),
    "weights": ("weights scored", "评分的权重"),
    "precision": ("precision", "精度"),
    "data": ("Data", "数据"),
    "examples": ("examples", "条"),
    "training": ("Training", "训练"),
    "parameters": ("Parameters", "参数"),
    "trainable_of": ("trainable of", "可训练，共"),
    "trust_remote_code": (
        "trust_remote_code was ON: Python code shipped with the model's repository was allowed to run.",
        "trust_remote_code 已开启：允许运行模型仓库附带的 Python 代码。",
    ),
    "hardware": ("Hardware", "硬件"),
    "time": ("time", "用时"),
    "final": ("Final", "最终"),
    "note": ("Note", "注意"),
    "wrong": ("Wrong predictions, largest error first", "错误预测（误差最大者在前）"),
    "right": ("Right predictions", "正确预测"),
    "of_samples": ("of", "共"),
    "all_samples": ("all samples", "全部样本"),
    "curves": ("loss and metric curves", "损失与指标曲线"),
    "notes_heading": ("Notes", "笔记"),
    "environment": ("Environment", "环境"),
}


def label(key: str, locale: str) -> str:
    """The fixed text `key` in `locale` (`en` or `zh`)."""
    return LABELS[key][LOCALES.index(locale)]


def title(key: str, locale: str = "en") -> str:
    """A metric key's column title in words: `wer_orthographic` → `WER, raw text …`, ATC keys by their parts."""
    column = COLUMNS.get(key)
    if column:
        return column.zh if locale == "zh" else column.en
    parts = key.split("/")
    if len(parts) == 4:  # hw atc: atco2/fine_tuned/base/wer → ATCO2 WER: fine-tuned + base LLM
        evaluation_set, system, corrector, metric = (ATC_PARTS.get(part, part) for part in parts)
        system = "fine-tuned Whisper" if parts[1] == "fine_tuned" else system
        corrector = "fine-tuned LLM" if parts[2] == "fine_tuned" else corrector
        return f"{evaluation_set} {title(parts[3], locale)}: {system} + {corrector}"
    return key.replace("_", " ").capitalize()


def kind(key: str) -> str:
    """How the numbers of a metric key print (see `Column.kind`); an unknown key prints as a ratio."""
    column = COLUMNS.get(key.rsplit("/", 1)[-1])
    return column.kind if column else "ratio"
