"""Request limits of ``bindkit serve``: body size, items per request, decoded pixels and media duration.

Every check runs *before* the expensive decode, on the file's header: a 20 000 x 20 000 PNG is refused from
its first bytes (a decompression bomb never allocates its pixels), a ten-hour WAV from its header. Headers can
lie, so the decoders also count what they produce against a per-request
:class:`~bindkit.inputs.budget.DecodeBudget` (:meth:`Limits.budget`): audio samples against
``max_audio_seconds``, decoded frames against ``max_pixels``, and all decoded bytes against
``max_decoded_bytes``. A request over a limit is answered 413 with a message naming the item, the measured
value and the option that raises the limit.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from .errors import ApiError

if TYPE_CHECKING:  # bindkit.inputs imports torch: not at CLI start-up
    from ..inputs.budget import DecodeBudget

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The limits one server enforces (each one a command-line option of ``bindkit serve``).

    Attributes:
        max_body_bytes: largest request body, in bytes (base64 inflates media by 4/3).
        max_items: most inputs in one request, all modalities together.
        max_pixels: most pixels (width x height) of one image, depth map, thermal image or video frame.
        max_audio_seconds: longest audio file (the header's duration is checked first; the decoded samples are
            counted too, so a header that understates the length is caught while decoding).
        max_video_seconds: longest video file.
        max_decoded_bytes: most bytes decoding one request's media may produce, all items together (audio
            samples x channels x 4, video frames kept x width x height x 3, image width x height x bands),
            counted as the decoders produce them (:class:`~bindkit.inputs.budget.DecodeBudget`).
    """

    max_body_bytes: int = 64 * MiB
    max_items: int = 256
    max_pixels: int = 40_000_000
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    max_decoded_bytes: int = 1024 * MiB

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---- checks ---------------------------------------------------------------------------------------------
    def check_count(self, n: int) -> None:
        """413 when a request carries more than ``max_items`` inputs."""
        if n > self.max_items:
            raise ApiError(413, f"the request has {n} inputs; at most {self.max_items} are allowed per request "
                           "(split it, or start the server with a larger --max-items)", param="input")

    def budget(self) -> DecodeBudget:
        """A fresh decode budget for one request (bytes, audio seconds and frame pixels)."""
        from ..inputs.budget import DecodeBudget

        return DecodeBudget(max_bytes=self.max_decoded_bytes, max_audio_seconds=self.max_audio_seconds,
                            max_pixels=self.max_pixels)

    def check_media(self, kind: str, data: bytes, label: str, budget: DecodeBudget | None = None) -> None:
        """413 when the encoded file ``data`` of input kind ``kind`` would decode past a limit. Files whose
        header cannot be read pass: the loader then reports them as undecodable (422). Images are charged to
        ``budget`` here (their decoders allocate exactly what the header says); audio and video as they decode."""
        if kind in ("image", "depth", "thermal"):
            decoded = self._check_image(data, label)
            if budget is not None and decoded:
                budget.charge(decoded, label, kind)
        elif kind == "audio":
            self._check_audio(data, label)
        elif kind == "video":
            self._check_video(data, label)

    def _pixels(self, w: int, h: int, label: str, what: str) -> None:
        if w * h > self.max_pixels:
            raise ApiError(413, f"{label}: {what} is {w} x {h} = {w * h} pixels, over the limit of "
                           f"{self.max_pixels} (--max-pixels)", param=label)

    def _check_image(self, data: bytes, label: str) -> int:
        """Checks the image's size; returns the bytes its decoded pixels take (0 when the header is unreadable)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = Image.open(io.BytesIO(data))  # lazy: reads the header only
                w, h = im.size
                bands = len(im.getbands())
        except Image.DecompressionBombError:
            raise ApiError(413, f"{label}: the image is a decompression bomb (PIL refuses its size); the limit "
                           f"is {self.max_pixels} pixels (--max-pixels)", param=label) from None
        except Exception:  # not an image PIL knows (a .npy, or garbage): the loader decides
            return 0
        self._pixels(w, h, label, "the image")
        return w * h * bands

    def _duration(self, seconds: float | None, limit: float, label: str, what: str, option: str) -> None:
        if seconds is not None and seconds > limit:
            raise ApiError(413, f"{label}: the {what} lasts {seconds:.1f} s, over the limit of {limit:g} s "
                           f"({option})", param=label)

    def _check_audio(self, data: bytes, label: str) -> None:
        seconds = None
        try:
            import soundfile as sf

            info = sf.info(io.BytesIO(data))
            if info.samplerate > 0 and info.frames >= 0:
                seconds = info.frames / info.samplerate
        except Exception:
            seconds = _av_duration(data, video=False)[0]
        self._duration(seconds, self.max_audio_seconds, label, "audio", "--max-audio-seconds")

    def _check_video(self, data: bytes, label: str) -> None:
        seconds, size = _av_duration(data, video=True)
        self._duration(seconds, self.max_video_seconds, label, "video", "--max-video-seconds")
        if size is not None:
            self._pixels(size[0], size[1], label, "a video frame")


def _av_duration(data: bytes, video: bool) -> tuple[float | None, tuple[int, int] | None]:
    """(duration in seconds, (width, height) of the video stream) from a container's header, None where
    unknown. Reads no frames."""
    try:
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            streams = container.streams.video if video else container.streams.audio
            if not streams:
                return None, None
            stream = streams[0]
            seconds = None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            size = None
            if video and stream.codec_context is not None and stream.codec_context.width:
                size = (int(stream.codec_context.width), int(stream.codec_context.height))
            return seconds, size
    except Exception:
        return None, None
