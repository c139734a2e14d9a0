"""Audio in and out without FFmpeg binaries: decode, resample to 16 kHz mono, extract from video, segment."""

import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import soundfile
import soxr

from hw import runs
from hw.errors import HwError

# Whisper's feature extractor expects 16 kHz input.
TARGET_RATE = 16000


def _require_file(path: Path, kind: str) -> None:
    if not path.is_file():
        raise HwError(f"{kind} file not found: {path}; check the path")


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file (wav, flac, ogg, mp3) with soundfile, averaging channels to mono.

    Returns:
        (samples as float32 in [-1, 1], sample rate in Hz).

    Raises:
        HwError: Missing file, or a file libsndfile cannot decode (corrupt, or a container such as mp4:
            use `extract_audio` for those).
    """
    path = Path(path)
    _require_file(path, "audio")
    try:
        samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise HwError(
            f"cannot decode audio file {path} ({error.error_string.rstrip('.')}); soundfile reads wav, flac, "
            "ogg and mp3: re-encode it, or use extract_audio for video and m4a"
        ) from None
    return samples.mean(axis=1, dtype=np.float32), sample_rate


def resample(samples: np.ndarray, from_rate: int, to_rate: int = TARGET_RATE) -> np.ndarray:
    """Resample mono float samples with soxr (its default high quality); same rate returns the input."""
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate).astype(np.float32, copy=False)


def load_16k_mono(path: str | Path) -> np.ndarray:
    """Decode an audio file and resample it to 16 kHz mono float32."""
    samples, sample_rate = decode(path)
    return resample(samples, sample_rate)


def extract_audio(media_path: str | Path) -> np.ndarray:
    """Decode the first audio track of a video or audio container (mp4, mkv, m4a, webm…) with PyAV.

    Channels are averaged and the result resampled with soxr, exactly as `load_16k_mono` does, so a
    clip's samples do not depend on which of the two read it.

    Returns:
        Samples at 16 kHz mono, float32.

    Raises:
        HwError: Missing or undecodable file, or a file without an audio track.
    """
    media_path = Path(media_path)
    _require_file(media_path, "media")
    try:
        with av.open(str(media_path)) as container:
            if not container.streams.audio:
                raise HwError(f"no audio track in {media_path}; give a video or audio file that has sound")
            stream = container.streams.audio[0]
            # Convert to planar float only; keep the channels and the rate for the mean and soxr below.
            converter = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
            chunks = [
                converted.to_ndarray()
                for frame in container.decode(stream)
                for converted in converter.resample(frame)
            ]
            chunks += [converted.to_ndarray() for converted in converter.resample(None)]
    except av.FFmpegError as error:
        raise HwError(
            f"cannot decode media file {media_path} ({error.strerror}); is it a complete video or audio file?"
        ) from None
    if not chunks:
        raise HwError(f"no audio track in {media_path}: its audio stream holds no samples")
    return resample(np.concatenate(chunks, axis=1).mean(axis=0, dtype=np.float32), stream.rate)


def segments(
    samples: np.ndarray, sample_rate: int, segment_seconds: float = 10.0, overlap_seconds: float = 2.0
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Cut overlapping windows: one starts every `segment_seconds - overlap_seconds` seconds.

    Windows run until one reaches the end of the signal; that last one is shorter. A tail no longer
    than the overlap is already inside the previous window, so it gets no window of its own: 25 s in
    10 s windows every 8 s gives 0-10, 8-18, 16-25 (not a fourth 24-25), while 27 s adds 24-27.

    Yields:
        (start in seconds, end in seconds, the samples in between).

    Raises:
        HwError: A segment length that is not positive, or an overlap outside [0, segment length).
    """
    if segment_seconds <= 0 or not 0 <= overlap_seconds < segment_seconds:
        raise HwError(
            f"cannot cut {segment_seconds} s segments overlapping by {overlap_seconds} s; the segment must "
            "be positive and the overlap at least 0 and shorter than the segment"
        )
    # Count in samples, not seconds, so windows never drift by accumulated rounding.
    window = round(segment_seconds * sample_rate)
    step = round((segment_seconds - overlap_seconds) * sample_rate)
    for start in range(0, len(samples), step):
        end = min(start + window, len(samples))
        yield start / sample_rate, end / sample_rate, samples[start:end]
        if end == len(samples):
            return


def _seconds_text(seconds: float) -> str:
    """Seconds to millisecond precision without trailing zeros: 8.0 → "8", 24.5 → "24.5", 1.25 → "1.25"."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def segment_name(stem: str, start_s: float, end_s: float) -> str:
    """File name of a segment, `{stem}_{start}_{end}.wav`, seconds written as `_seconds_text` does."""
    return f"{stem}_{_seconds_text(start_s)}_{_seconds_text(end_s)}.wav"


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically: a temporary file in the same folder, then a rename.

    A crash mid-write therefore never leaves a truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = runs.partial_path(path)  # created by soundfile, so with the umask's mode (mkstemp's is 0600)
    try:
        soundfile.write(temporary, samples, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
