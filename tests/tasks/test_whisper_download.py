"""`hw whisper-dataset` with URLs: yt-dlp's generic extractor against a local HTTP server (never the internet) —
a media file, a page holding two (a playlist), a URL that fails; downloads logged and skipped on a re-run."""

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from hw import runs
from hw.cli import app
from tests.tasks.test_whisper_dataset import OPTIONS

pytest.importorskip("yt_dlp")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """A local site: voice.wav (4 s), talks.html with two <audio> files; its URL and the paths requested."""
    site = tmp_path_factory.mktemp("site")
    time = np.arange(4 * 16000) / 16000
    for name, pitch in (("voice", 300), ("first", 400), ("second", 500)):
        samples = (0.3 * np.sin(2 * np.pi * pitch * time)).astype(np.float32)
        soundfile.write(site / f"{name}.wav", samples, 16000)
    audios = '<audio src="first.wav"></audio><audio src="second.wav"></audio>'
    (site / "talks.html").write_text(f"<html><head><title>talks</title></head><body>{audios}</body></html>")
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_urls_and_playlists_are_downloaded_once_labelled_and_a_failed_url_skipped(
    server: tuple[str, list[str]], tmp_path: Path
) -> None:
    site, requested = server
    out = tmp_path / "mine"
    urls = [f"{site}/voice.wav", f"{site}/missing.wav", f"{site}/talks.html"]
    result = CliRunner().invoke(app, ["whisper-dataset", *urls, "--out", str(out), *OPTIONS])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{out}: 3 media labelled (")  # the wav and the playlist's two
    assert "), 0 already done, 1 failed" in result.stdout  # the 404
    failures = [line for line in result.stderr.splitlines() if f"skipped {site}/missing.wav" in line]
    assert len(failures) == 1 and "404" in failures[0]
    downloads = tmp_path / "mine-downloads"  # beside the audiofolder: hw push --with-data never uploads them
    assert sorted(path.name for path in downloads.iterdir()) == ["talks-1.wav", "talks-2.wav", "voice.wav"]
    log = runs.read_jsonl(out / "log.jsonl")
    by_url = {entry["url"]: entry for entry in log if "url" in entry}
    assert by_url[urls[0]]["status"] == "downloaded" and by_url[urls[0]]["files"] == [
        str(downloads / "voice.wav")
    ]
    assert by_url[urls[1]]["status"] == "failed" and "404" in by_url[urls[1]]["error"]
    assert len(by_url[urls[2]]["files"]) == 2
    labelled = {entry["media"] for entry in log if entry.get("status") == "done"}
    assert labelled == {str(path) for path in downloads.iterdir()}
    # A re-run downloads nothing already logged (the skip-list); the failed URL is tried again.
    count = len(requested)
    again = CliRunner().invoke(app, ["whisper-dataset", urls[0], urls[2], "--out", str(out), *OPTIONS])
    assert again.exit_code == 0, again.output
    assert requested[count:] == []
    assert again.stdout.startswith(
        f"{out}: 0 media labelled (0 clips: 0 train, 0 test), 3 already done, 0 failed"
    )


def test_offline_every_url_fails_in_one_line_each_then_one_error(tmp_path: Path) -> None:
    # Port 9 on localhost (discard) refuses connections: what an offline machine answers.
    urls = ["http://127.0.0.1:9/a.wav", "http://127.0.0.1:9/b.wav"]
    result = CliRunner().invoke(app, ["whisper-dataset", *urls, "--out", str(tmp_path / "mine"), *OPTIONS])
    assert result.exit_code == 2
    assert [
        line.count("skipped http://127.0.0.1:9/") for line in result.stderr.splitlines() if "skipped" in line
    ] == [1, 1]
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith("hw: error: none of the 2 URLs could be downloaded")
    )
    assert not (tmp_path / "mine").exists() and not (tmp_path / "mine-downloads").exists()
