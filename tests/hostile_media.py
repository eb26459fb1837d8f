"""Generated media that pass header checks but cost a server memory when decoded naively (issue 19): audio
whose container header understates its length, video with huge frames, video whose header lies about its
duration, WAV with many channels. Used by tests/test_decode_bounds.py, tests/test_serve_bounds.py and
benchmarks/bench_serve_hostile.py."""

from __future__ import annotations

import io
import struct

import numpy as np


def lying_audio(real_seconds: float, claimed_seconds: float = 1.0, rate: int = 8000, codec: str = "pcm_s16le",
                bit_rate: int | None = None) -> bytes:
    """A Matroska audio file (which libsndfile cannot read, so PyAV decodes it) holding ``real_seconds`` of a
    mono tone whose header says it lasts ``claimed_seconds``: its Segment Duration element is rewritten.
    ``codec="libopus"`` (rate 48000, ``bit_rate`` 24000) gives a small file, like 4 MB for 20 minutes."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if bit_rate:
            stream.bit_rate = bit_rate
        fmt = "s16" if codec.startswith("pcm_s16") else "flt"
        n, block = int(real_seconds * rate), rate // 10
        for start in range(0, n, block):
            t = np.arange(start, min(n, start + block)) / rate
            x = 0.3 * np.sin(2 * np.pi * (440 + 200 * np.sin(t / 3)) * t)
            a = (x * 32767).astype(np.int16)[None] if fmt == "s16" else x.astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(a, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    at = data.find(b"\x44\x89\x88")  # Duration (float64, in TimecodeScale units: ms)
    if at < 0:
        raise RuntimeError("no Matroska Duration element to rewrite")
    data[at + 3:at + 11] = struct.pack(">d", claimed_seconds * 1000.0)
    return bytes(data)


def huge_frame_video(frames: int = 8, size: tuple[int, int] = (4000, 4000), fps: int = 4) -> bytes:
    """An H.264 MP4 of ``frames`` frames of ``size`` (flat colour with thin lines: tiny once compressed)."""
    import av

    w, h = size
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            a = np.zeros((h, w, 3), np.uint8)
            a[:, :, 0] = (i * 30) % 256
            a[::7, :, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def many_channel_wav(channels: int = 128, seconds: float = 2.5, rate: int = 8000, seed: int = 0) -> bytes:
    """A 16-bit WAV with ``channels`` channels of noise (channel 0 a tone plus noise)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = 0.1 * rng.standard_normal((n, channels))
    x[:, 0] += 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def lying_video(frames: int, claimed_seconds: float | None, fps: int = 10, fmt: str = "matroska",
                size: tuple[int, int] = (64, 48), codec: str = "libx264") -> bytes:
    """A video of ``frames`` flat grey frames (frame i at level 6 i mod 256) at ``fps`` whose header says it lasts
    ``claimed_seconds`` (None: the honest header). Matroska: its Segment Duration element is rewritten (what
    FFmpeg reports as the container's duration; its video stream has none). MP4: the mvhd, tkhd and mdhd
    durations are rewritten (FFmpeg then takes a shorter claim as the stream's duration; it caps a longer one
    by the sample table)."""
    import av

    w, h = size
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            a = np.full((h, w, 3), (i * 6) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    if claimed_seconds is None:
        return bytes(data)
    if fmt == "matroska":
        at = data.find(b"\x44\x89\x88")  # Duration (float64, in TimecodeScale units: ms)
        if at < 0:
            raise RuntimeError("no Matroska Duration element to rewrite")
        data[at + 3:at + 11] = struct.pack(">d", claimed_seconds * 1000.0)
        return bytes(data)
    _rewrite_mp4_durations(data, claimed_seconds)
    return bytes(data)


def _rewrite_mp4_durations(data: bytearray, seconds: float) -> None:
    """Set the duration fields of the mvhd, tkhd and mdhd boxes of an MP4 (in place) to ``seconds``."""
    def boxes(name: bytes):
        at = data.find(name)
        while at >= 0:
            yield at - 4  # the box starts with its 4-byte size
            at = data.find(name, at + 4)

    def field(box: int, offset_v0: int, offset_v1: int) -> tuple[int, int]:
        version = data[box + 8]
        return box + 12 + (offset_v1 if version else offset_v0), 8 if version else 4

    def put(at: int, width: int, value: int) -> None:
        data[at:at + width] = value.to_bytes(width, "big")

    mvhd = next(boxes(b"mvhd"))
    ts_at, _ = field(mvhd, 8, 16)
    movie_scale = int.from_bytes(data[ts_at:ts_at + 4], "big")
    at, width = field(mvhd, 12, 20)
    put(at, width, int(seconds * movie_scale))
    for box in boxes(b"tkhd"):
        at, width = field(box, 16, 24)
        put(at, width, int(seconds * movie_scale))
    for box in boxes(b"mdhd"):
        ts_at, _ = field(box, 8, 16)
        scale = int.from_bytes(data[ts_at:ts_at + 4], "big")
        at, width = field(box, 12, 20)
        put(at, width, int(seconds * scale))
