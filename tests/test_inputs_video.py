"""Video loader: clip sampling, frame choice, scaling and crops, on the sample mp4 and on synthetic videos whose
frames carry their own index as grey level."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bindkit.errors import InputError
from bindkit.inputs import preprocess
from bindkit.inputs.video import pick_frames

av = pytest.importorskip("av")

PLAIN = {"mean": [0, 0, 0], "std": [1, 1, 1]}  # frames / 255 only, so grey levels can be read back
STEP = 6  # grey level of frame i is i * STEP


def make_video(n: int, fps: int = 10, w: int = 64, h: int = 48, codec: str = "libx264", pattern=None) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            a = pattern(i) if pattern else np.full((h, w, 3), (i * STEP) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def frame_ids(batch: torch.Tensor) -> torch.Tensor:
    """(clips, frames) frame indices read back from the grey level of the centre crops."""
    centre = batch[1::3, 0, :, 112, 112]  # crop 1 of each clip, red channel, centre pixel
    return torch.round(centre * 255 / STEP)


@pytest.fixture(scope="module")
def sample(samples_dir) -> torch.Tensor:
    return preprocess("video", [samples_dir / "video" / "wind_noise.mp4"])


def test_sample_video_shape(sample):
    assert sample.shape == (1, 15, 3, 2, 224, 224) and sample.dtype == torch.float32
    assert torch.isfinite(sample).all()


def test_first_frame_is_short_side_scaled_normalised_and_cropped(sample, samples_dir):
    with av.open(str(samples_dir / "video" / "wind_noise.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    x = torch.from_numpy(first).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    nw = math.floor(w / h * 224)  # landscape: height -> 224
    x = F.interpolate(x, size=(224, nw), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    x = (x - mean) / std
    for crop, off in enumerate([0, math.ceil((nw - 224) / 2), nw - 224]):
        got = sample[0, crop, :, 0]  # clip 0, crop `crop`, frame 0
        assert (got - x[:, :, off : off + 224]).abs().max().item() < 1e-5


def test_clips_take_first_and_last_frame_of_each_window():
    """4 s at 10 fps: clip k covers [0.4 k, 0.4 k + 2) s, i.e. frames 4k .. 4k + 19 (B-frames reordered)."""
    got = preprocess("video", [make_video(40)], **PLAIN)[0]
    want = torch.tensor([[4 * k, 4 * k + 19] for k in range(5)], dtype=torch.float32)
    assert torch.equal(frame_ids(got), want)


def test_video_shorter_than_a_clip_and_single_frame():
    short, single = preprocess("video", [make_video(5, codec="mpeg4"), make_video(1, codec="mpeg4")], **PLAIN)
    assert short.shape == single.shape == (15, 3, 2, 224, 224)
    assert torch.equal(frame_ids(short), torch.tensor([[0.0, 4.0]] * 5))
    assert torch.equal(single[:, :, 0], single[:, :, 1])  # the only frame, repeated


def test_portrait_video_is_cropped_top_centre_bottom():
    def rows(i):  # brightness grows downwards
        return np.repeat(np.linspace(0, 255, 96).astype(np.uint8)[:, None, None], 48, axis=1).repeat(3, axis=2)

    got = preprocess("video", [make_video(3, w=48, h=96, codec="mpeg4", pattern=rows)], **PLAIN)[0]
    top, centre, bottom = (got[c].mean().item() for c in range(3))
    assert top < centre < bottom


def test_in_memory_frames_need_fps():
    frames = np.stack([np.full((48, 64, 3), i * STEP, np.uint8) for i in range(40)])
    got = preprocess("video", [frames], fps=10, **PLAIN)[0]
    assert torch.equal(frame_ids(got), torch.tensor([[4.0 * k, 4.0 * k + 19] for k in range(5)]))
    with pytest.raises(InputError, match="fps"):
        preprocess("video", [frames])


def test_pick_frames_uses_the_frame_on_screen_for_an_empty_window():
    from fractions import Fraction

    times = [Fraction(0), Fraction(5)]
    assert pick_frames(times, [(Fraction(1), Fraction(3))], 2) == [[0, 0]]


def test_bad_videos_raise_input_error(tmp_path, samples_dir):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"not a video at all" * 50)
    jpg = (samples_dir / "image" / "dog.jpg").read_bytes()
    with pytest.raises(InputError, match="not a decodable video") as info:
        preprocess("video", [garbage])
    assert info.value.item == str(garbage)
    with pytest.raises(InputError, match="still image"):
        preprocess("video", [jpg])
    with pytest.raises(InputError, match="unknown extension"):
        preprocess("video", [samples_dir / "image" / "dog.jpg"])
