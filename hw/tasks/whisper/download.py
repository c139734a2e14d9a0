"""Media from URLs for `hw whisper-dataset`: yt-dlp (the `hw[download]` extra) fetches the audio of each video or
playlist once, records it in the audiofolder's log.jsonl, and a re-run reuses the files instead of downloading."""

import importlib.util
import logging
from pathlib import Path
from typing import Any

from hw import runs
from hw.errors import HwError

log = logging.getLogger(__name__)


def is_url(item: str) -> bool:
    """Whether a command-line input names a URL rather than a file."""
    return item.startswith(("http://", "https://"))


def downloads_folder(out: Path) -> Path:
    """Where downloads go: beside the audiofolder, so `hw push --with-data` never uploads the source media."""
    return out.parent / f"{out.name}-downloads"


def fetch(urls: list[str], log_path: Path, folder: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """The local files of every URL's audio (a playlist gives several), downloading those the log lacks.

    A URL that fails gets one warning line, and the others continue.

    Returns:
        The files, in URL then playlist order; the log entries of this call's downloads,
        `{"url", "status": "downloaded", "files"}` or `{"url", "status": "failed", "error"}`.

    Raises:
        HwError: yt-dlp is not installed.
    """
    if importlib.util.find_spec("yt_dlp") is None:
        raise HwError(
            f"{urls[0]} is a URL, and downloading needs yt-dlp, which is not installed; "
            "run `pip install 'hw[download]'`, or download the media and give their files"
        )
    done = _downloaded(log_path)
    files, entries = [], []
    for url in urls:
        if url in done and all(path.is_file() for path in done[url]):
            log.info("already downloaded, skipped: %s", url)
            files += done[url]
            continue
        try:
            fetched = _download(url, folder)
        except HwError as error:
            log.warning("skipped %s: %s", url, error)
            entries.append({"url": url, "status": "failed", "error": str(error)})
            continue
        entries.append({"url": url, "status": "downloaded", "files": [str(path) for path in fetched]})
        files += fetched
    return files, entries


def _download(url: str, folder: Path) -> list[Path]:
    """yt-dlp's best audio-only format of a video, or of each video of a playlist (the whole file when a site
    offers no audio-only one: the audio track is extracted later, without FFmpeg)."""
    import yt_dlp

    options: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": str(folder / "%(id)s.%(ext)s"),
        "restrictfilenames": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "socket_timeout": 30,
        "retries": 2,
        "logger": _Quiet(),
    }
    try:
        with yt_dlp.YoutubeDL(options) as downloader:
            info = downloader.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as error:
        reason = str(error).removeprefix("ERROR: ").splitlines()[0]
        raise HwError(f"cannot download {url} ({reason}); check the URL and the network") from None
    entries = [entry for entry in (info.get("entries") or [info]) if entry]
    files = [Path(done["filepath"]) for entry in entries for done in entry.get("requested_downloads", [])]
    if not files:
        raise HwError(f"nothing to download at {url}: no video or audio found there")
    return files


class _Quiet:
    """yt-dlp's messages into hw's log: debug and progress dropped, warnings kept, errors raised by yt-dlp."""

    def debug(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        log.warning("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)  # yt-dlp raises it as DownloadError, which says it in one line


def _downloaded(log_path: Path) -> dict[str, list[Path]]:
    """URLs downloaded by earlier runs and their files, from log.jsonl."""
    if not log_path.is_file():
        return {}
    entries = runs.read_jsonl(log_path)
    return {e["url"]: [Path(f) for f in e["files"]] for e in entries if e.get("status") == "downloaded"}
