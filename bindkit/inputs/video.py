"""Video loader: a video file (PyAV) -> (clips x crops) x 3 x frames x size x size, as NOTES "Video" describes.

* ``clips_per_video`` clips of ``clip_duration`` s starting at k * max(duration - clip, 0) / clips (exact
  fractions; pytorchvideo's ConstantClipsPerVideoSampler); a clip holds the frames whose presentation time t
  (from the stream start) satisfies start <= t < end. The duration is the container's when it agrees with
  the frames' timestamps (within 1 s or 10 %); a header that lies (hours claimed over seconds of frames, a
  second over minutes) is ignored and the span of the frames is used, so a header never moves the clips
  off the frames nor makes the loader convert more than the picked frames;
* ``frames_per_clip`` frames per clip at indices ``linspace(0, T - 1, n).long()`` (frames repeat when a clip
  has fewer; a clip with none takes the frame shown at its start);
* frames / 255, short side scaled to ``size`` with bilinear ``interpolate`` (align_corners=False, long side
  floor(long / short * size)), CLIP-normalised, then 3 crops of ``size`` along the long side (start, centre,
  end; centred on the short side). Output order: clip-major, crop-minor.

Only the frames that are kept are converted to RGB: packet timestamps are read first (no decoding), then one
decoding pass converts the chosen frames, each scaled to ``size`` as soon as it is decoded (one full-size float
frame at a time, never all of them), so memory stays small for long or high-resolution videos.
"""

from __future__ import annotations

import bisect
import math
import threading
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, describe_exc
from .budget import current_budget
from .sources import Source

DEFAULTS: dict[str, Any] = {
    "size": 224,
    "clip_duration": 2.0,
    "clips_per_video": 5,
    "frames_per_clip": 2,
    "spatial_crops": 3,
    "interpolation": "bilinear",
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "fps": None,
}


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed video: (clips_per_video * spatial_crops, 3, frames_per_clip, size, size)."""
    s = int(p["size"])
    return (int(p["clips_per_video"]) * int(p["spatial_crops"]), 3, int(p["frames_per_clip"]), s, s)


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    if p["spatial_crops"] not in (1, 3):
        raise ValueError(f"spatial_crops must be 1 (centre) or 3 (start/centre/end), got {p['spatial_crops']!r}")
    if p["interpolation"] not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"video interpolation must be bilinear, bicubic or nearest, got {p['interpolation']!r}")
    for key in ("size", "clips_per_video", "frames_per_clip"):
        if int(p[key]) <= 0:
            raise ValueError(f"{key} must be positive, got {p[key]!r}")
    if float(p["clip_duration"]) <= 0:
        raise ValueError(f"clip_duration must be positive, got {p['clip_duration']!r}")


def clip_windows(duration: float, clip_s: float, clips: int) -> list[tuple[Fraction, Fraction]]:
    """[start, end) of each clip in seconds (exact fractions of the float duration)."""
    step = Fraction(max(duration - clip_s, 0)) / clips
    return [(step * k, step * k + Fraction(clip_s)) for k in range(clips)]


def pick_frames(times: list[Fraction], windows: list[tuple[Fraction, Fraction]], n: int) -> list[list[int]]:
    """For each window, ``n`` indices into the sorted ``times``: linspace(0, T - 1, n) over the frames inside;
    a window with no frame uses the last frame before its end (or the first frame). Binary searches: a file of
    many frames costs log(frames) per window."""
    picks = []
    for start, end in windows:
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_left(times, end)  # times[lo:hi] in [start, end)
        inside: range | list[int] = range(lo, hi) if lo < hi else [max(hi - 1, 0)]
        idx = torch.linspace(0, len(inside) - 1, n).long().tolist()
        picks.append([inside[i] for i in idx])
    return picks


_AV_LOCK = threading.Lock()
#: Memory one frame's timestamp takes while the clips are placed (its pts, in a set and a sorted list, and
#: its time as a Fraction): charged to the decode budget, :data:`_TABLE_BLOCK` frames at a time, so that a file
#: of millions of tiny frames is refused while it is read rather than after it filled memory.
TIMESTAMP_BYTES, _TABLE_BLOCK = 256, 4096


def _stream_info(src: Source):
    """(sorted presentation times in s from the stream start, the pts of each, duration in s), no decoding.
    The duration is the header's when it agrees with the frames' timestamps (:func:`header_agrees`), else
    the span of the frames (the same as for a file with no duration in its header)."""
    import av

    budget = current_budget()
    with av.open(src.open(), mode="r") as container:
        fmt = container.format.name
        if fmt in ("image2", "image2pipe") or fmt.endswith("_pipe"):
            raise src.fail(f"is a still image ({fmt}), not a video; embed it as an image")
        if not container.streams.video:
            raise src.fail("no video stream in the file")
        stream = container.streams.video[0]
        tb = stream.time_base
        start = stream.start_time or 0
        seen: set[int] = set()
        for pk in container.demux(stream):
            if pk.pts is not None and pk.size and pk.pts not in seen:
                seen.add(pk.pts)
                if len(seen) % _TABLE_BLOCK == 0:  # a file of many tiny frames: its timestamp table is budgeted
                    budget.charge(_TABLE_BLOCK * TIMESTAMP_BYTES, src.label, "video")
        pts = sorted(seen)
        del seen
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
    if not pts:
        raise src.fail("the video stream has no frames")
    step = pts[1] - pts[0] if len(pts) > 1 else 0
    spanned = float((pts[-1] - start + step) * tb)  # what the frames cover: the last one shown for one step
    if duration is None or not header_agrees(duration, spanned):
        duration = spanned  # no header, or one that lies: the frames' own timestamps place the clips
    times = [Fraction(p - start) * tb for p in pts]
    return times, pts, duration


#: A header duration within this many seconds, or this fraction, of what the frames span is kept.
HEADER_SLACK_S, HEADER_SLACK_FRACTION = 1.0, 0.1


def header_agrees(header_s: float, spanned_s: float) -> bool:
    """Whether a container's duration ``header_s`` is plausible for frames spanning ``spanned_s`` seconds: within
    :data:`HEADER_SLACK_S` or :data:`HEADER_SLACK_FRACTION` of it. Honest files (whose header the reference's
    clip placement uses, so it is kept bit for bit) agree; a header claiming hours on seconds of frames, or a
    second on minutes, does not, and the clips are then placed from the frames' timestamps."""
    return abs(header_s - spanned_s) <= max(HEADER_SLACK_S, HEADER_SLACK_FRACTION * spanned_s)


def _decode_frames(src: Source, wanted: set[int], p: dict[str, Any]
                   ) -> tuple[dict[int, torch.Tensor], set[tuple[int, int]]]:
    """The frames with pts in ``wanted``, each converted and scaled as it is decoded (:func:`_scaled`), so only
    one full-size frame is held at a time (one decoding pass, stops early). A wanted pts the decoder never
    reports takes the next decoded frame. Each converted frame is charged to the decode budget. Returns the
    frames by pts and the set of (width, height) sizes among them."""
    import av

    budget = current_budget()
    found: dict[int, torch.Tensor] = {}
    sizes: set[tuple[int, int]] = set()
    todo = sorted(wanted)
    with av.open(src.open(), mode="r") as container:
        stream = container.streams.video[0]
        # Frame threading ("AUTO"/"FRAME") can hang when decoding stops before the end with torch loaded
        # (PyAV-Org/PyAV#1849); slice threading cannot.
        stream.thread_type = "SLICE"
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            hit = [t for t in todo if t <= frame.pts]
            if hit:
                budget.check_pixels(frame.width, frame.height, src.label, "video")
                budget.charge(frame.width * frame.height * 3, src.label, "video")
                sizes.add((frame.width, frame.height))
                scaled = _scaled(frame.to_ndarray(format="rgb24"), p)
                for t in hit:
                    found[t] = scaled
                todo = [t for t in todo if t > frame.pts]
            if not todo:
                break
    return found, sizes


def _frames_from_array(src: Source, p: dict[str, Any]):
    """In-memory video: T x H x W x 3 (uint8, or float in [0, 1]) with the ``fps`` option."""
    if not p.get("fps"):
        raise src.fail("an in-memory video needs the fps option (frames per second)")
    obj = src.obj
    a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[0] == 0:
        raise src.fail(f"wrong array shape {tuple(a.shape)}; expected frames x H x W x 3")
    if np.issubdtype(a.dtype, np.floating):
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    fps = Fraction(p["fps"]).limit_denominator(1001)
    times = [Fraction(i) / fps for i in range(a.shape[0])]
    return times, a, float(a.shape[0] / fps)


def _scaled(rgb: np.ndarray, p: dict[str, Any]) -> torch.Tensor:
    """One H x W x 3 uint8 frame -> (3, nh, nw) float32: / 255, short side scaled to ``size``. Frames are scaled
    one at a time as they are decoded (the values are those of scaling them all together), so a huge frame
    costs one float copy of itself, never one per kept frame."""
    size = int(p["size"])
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    x.div_(255.0)
    h, w = x.shape[-2:]
    if w < h:
        nh, nw = int(math.floor(h / w * size)), size
    else:
        nh, nw = size, int(math.floor(w / h * size))
    mode = p["interpolation"]
    out = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False if mode != "nearest" else None)[0]
    del x
    return out


def _normalise_crop(x: torch.Tensor, p: dict[str, Any]) -> list[torch.Tensor]:
    """Scaled frames (F, 3, nh, nw) -> CLIP-normalised, then the spatial crops."""
    size = int(p["size"])
    nh, nw = x.shape[-2:]
    mean = torch.tensor(p["mean"], dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(p["std"], dtype=x.dtype).view(1, 3, 1, 1)
    x = (x - mean) / std
    tall = nh > nw
    long = nh if tall else nw
    other = int(math.ceil(((nw if tall else nh) - size) / 2))
    offsets = [int(math.ceil((long - size) / 2))]
    if int(p["spatial_crops"]) == 3:
        offsets = [0, offsets[0], long - size]
    crops = []
    for off in offsets:
        if tall:
            crops.append(x[..., off : off + size, other : other + size])
        else:
            crops.append(x[..., other : other + size, off : off + size])
    return crops


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One video -> float32 tensor (clips * crops, 3, frames_per_clip, size, size)."""
    n = int(p["frames_per_clip"])
    if src.obj is not None:
        times, array, duration = _frames_from_array(src, p)
        picks = pick_frames(times, _windows(duration, p), n)
        by_index = {i: _scaled(array[i], p) for i in sorted({i for clip in picks for i in clip})}
        scaled = [by_index[i] for clip in picks for i in clip]
    else:
        try:
            # One video at a time through FFmpeg: a build once hung with two loader threads inside PyAV
            # (one in av.open); decoding still overlaps the model, which runs in the main thread.
            with _AV_LOCK:
                times, pts, duration = _stream_info(src)
                picks = pick_frames(times, _windows(duration, p), n)
                found, sizes = _decode_frames(src, {pts[i] for clip in picks for i in clip}, p)
        except InputError:
            raise
        except Exception as exc:  # FFmpeg reports bad data through many av.error types
            raise src.fail(f"not a decodable video ({describe_exc(exc)})") from None
        missing = [pts[i] for clip in picks for i in clip if pts[i] not in found]
        if missing:
            raise src.fail(f"could not decode {len(missing)} frame(s); the file may be truncated")
        if len(sizes) > 1:
            raise src.fail("the frame size changes inside the video; re-encode it at one resolution")
        scaled = [found[pts[i]] for clip in picks for i in clip]
    crops = _normalise_crop(torch.stack(scaled), p)  # (clips * n, 3, nh, nw)
    out = []
    for c in range(len(picks)):
        for crop in crops:
            out.append(crop[c * n : (c + 1) * n].permute(1, 0, 2, 3))  # (3, n, size, size)
    return torch.stack(out).contiguous()


def _windows(duration: float, p: dict[str, Any]) -> list[tuple[Fraction, Fraction]]:
    return clip_windows(duration, float(p["clip_duration"]), int(p["clips_per_video"]))
