"""Audio I/O: wav and mp3 decoding, 16 kHz resampling, audio from video containers, overlapping segments."""

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from hw.audio import decode, extract_audio, load_16k_mono, resample, segment_name, segments, write_wav
from hw.errors import HwError


def _sine(seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * 440 * time)).astype(np.float32)


def _write_video(path: Path, audio_codec: str | None, seconds: float = 2.0, sample_rate: int = 44100) -> None:
    """A tiny mpeg4 video (10 black 32×32 frames a second), with a stereo 440 Hz track if a codec is given."""
    with av.open(str(path), "w") as container:
        # Every stream must exist before the first packet is muxed (that writes the container header).
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream(audio_codec, rate=sample_rate, layout="stereo") if audio_codec else None
        for _ in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            _encode_sine(container, audio, seconds, sample_rate)


def _encode_sine(container, audio, seconds: float, sample_rate: int) -> None:
    audio_format = audio.codec_context.format.name  # aac wants planar float, pcm_s16le packed int16
    frame_size = audio.codec_context.frame_size or 1024
    signal = _sine(seconds, sample_rate)
    for start in range(0, len(signal), frame_size):
        chunk = np.stack([signal[start : start + frame_size]] * 2)
        if audio_format == "s16":
            chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)  # packed: L R L R …
        frame = av.AudioFrame.from_ndarray(chunk, format=audio_format, layout="stereo")
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(audio.encode(frame))
    container.mux(audio.encode())


def test_wav_round_trip_within_16_bit_quantization(tmp_path):
    path = tmp_path / "clips" / "tone.wav"
    signal = _sine(1.0, 16000)
    write_wav(path, signal, 16000)
    samples, sample_rate = decode(path)
    assert (sample_rate, samples.dtype, samples.shape) == (16000, np.float32, (16000,))
    assert np.abs(samples - signal).max() <= 1 / 32768
    assert [item.name for item in path.parent.iterdir()] == ["tone.wav"]  # no temporary file left


def test_write_wav_failure_leaves_no_file(tmp_path):
    with pytest.raises(soundfile.LibsndfileError):
        write_wav(tmp_path / "bad.wav", _sine(0.1, 16000), 0)
    assert list(tmp_path.iterdir()) == []


def test_stereo_is_averaged_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.tile([[0.5, -0.25]], (100, 1)), 8000, subtype="FLOAT")
    samples, sample_rate = decode(path)
    assert sample_rate == 8000
    np.testing.assert_allclose(samples, np.full(100, 0.125, np.float32))


def test_mp3_at_48_khz_decodes_and_resamples_to_16_khz(tmp_path):
    path = tmp_path / "clip.mp3"
    soundfile.write(path, _sine(5.0, 48000), 48000, format="MP3", subtype="MPEG_LAYER_III")
    samples, sample_rate = decode(path)
    assert (sample_rate, len(samples)) == (48000, 240000)
    at_16k = load_16k_mono(path)
    assert (at_16k.dtype, len(at_16k)) == (np.float32, 80000)  # 5 s × 16000
    # Still the 440 Hz tone in phase: mp3 coding and resampling keep it within a few percent.
    assert np.corrcoef(at_16k, _sine(5.0, 16000))[0, 1] > 0.99


def test_resample_length_and_identity():
    assert len(resample(np.zeros(48000, np.float32), 48000)) == 16000
    assert len(resample(np.zeros(44100, np.float32), 44100, 22050)) == 22050
    samples = np.ones(10, np.float32)
    assert resample(samples, 16000) is samples


def test_extract_audio_from_video_with_pcm_track(tmp_path):
    path = tmp_path / "talk.mkv"
    _write_video(path, "pcm_s16le")
    samples = extract_audio(path)
    assert (samples.dtype, len(samples)) == (np.float32, 32000)  # 2 s × 16 kHz, exactly
    assert np.abs(samples).max() == pytest.approx(0.3, abs=0.01)  # two equal channels average to one


def test_extract_audio_from_mp4_with_aac_track(tmp_path):
    path = tmp_path / "talk.mp4"
    _write_video(path, "aac")
    # AAC adds 1024 samples of encoder priming at 44.1 kHz, about 23 ms.
    assert len(extract_audio(path)) / 16000 == pytest.approx(2.0, abs=0.03)


def test_video_without_audio_is_an_error(tmp_path):
    path = tmp_path / "silent.mp4"
    _write_video(path, None)
    with pytest.raises(HwError, match=r"no audio track in .*silent\.mp4"):
        extract_audio(path)


def test_corrupt_and_missing_files_are_errors_naming_the_file(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(HwError, match=r"cannot decode audio file .*broken\.wav \("):
        decode(broken)
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(HwError, match=r"cannot decode media file .*broken\.mp4 \("):
        extract_audio(broken_video)
    with pytest.raises(HwError, match=r"audio file not found: .*absent\.flac"):
        load_16k_mono(tmp_path / "absent.flac")
    with pytest.raises(HwError, match=r"media file not found: .*absent\.mp4"):
        extract_audio(tmp_path / "absent.mp4")


def _windows(seconds: float, sample_rate: int = 100) -> list[tuple[float, float, int]]:
    signal = np.zeros(round(seconds * sample_rate), np.float32)
    return [(start, end, len(chunk)) for start, end, chunk in segments(signal, sample_rate)]


def test_segments_every_8_seconds_with_a_short_last_window():
    assert _windows(25) == [(0.0, 10.0, 1000), (8.0, 18.0, 1000), (16.0, 25.0, 900)]
    # A tail within the overlap (24-25 s, 24-26 s) is already covered; a longer one gets its window.
    assert _windows(26) == [(0.0, 10.0, 1000), (8.0, 18.0, 1000), (16.0, 26.0, 1000)]
    assert _windows(27)[-1] == (24.0, 27.0, 300)
    assert _windows(5) == [(0.0, 5.0, 500)]
    assert _windows(0) == []


def test_segments_carry_the_samples_of_their_window():
    signal = np.arange(2500, dtype=np.float32)  # 25 s at 100 Hz: a sample's value is its index
    starts = [(chunk[0], chunk[-1]) for _, _, chunk in segments(signal, 100)]
    assert starts == [(0, 999), (800, 1799), (1600, 2499)]


def test_segment_names():
    names = [segment_name("clip", start, end) for start, end, _ in segments(np.zeros(25 * 16000), 16000)]
    assert names == ["clip_0_10.wav", "clip_8_18.wav", "clip_16_25.wav"]
    assert segment_name("clip", 24.5, 27.125) == "clip_24.5_27.125.wav"
    assert segment_name("clip", 0.0004, 1 / 3) == "clip_0_0.333.wav"


def test_segment_overlap_must_be_shorter_than_the_segment():
    with pytest.raises(HwError, match=r"cannot cut 10.0 s segments overlapping by 10.0 s"):
        list(segments(np.zeros(100), 10, segment_seconds=10.0, overlap_seconds=10.0))
