"""Request and response shapes of the server's three protocols, and the parsing that turns a request body
into typed inputs or an :class:`~bindkit.serve.errors.ApiError` naming the field at fault.

* **Weaviate multi2vec-bind** (``POST /vectorize``): seven optional lists in, seven ``*Vectors`` lists out.
* **OpenAI embeddings** (``POST /v1/embeddings``): ``input`` (a string or a list of them), ``encoding_format``
  ``float`` or ``base64`` (little-endian float32 bytes, as OpenAI encodes them), plus bindkit's ``modality``.
* **bindkit search** (``POST /search``, ``/add``, ``/remove``).

Media travel as standard base64 of the file's bytes (line breaks and other whitespace tolerated, missing
padding tolerated) or as ``data:<mime>;base64,<...>`` URIs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import describe_exc
from .errors import ApiError

#: Weaviate request key -> bindkit input kind, in the order Weaviate's module lists them.
WEAVIATE_KEYS: dict[str, str] = {
    "texts": "text",
    "images": "image",
    "audio": "audio",
    "video": "video",
    "imu": "imu",
    "thermal": "thermal",
    "depth": "depth",
}
#: bindkit input kind -> Weaviate response key.
WEAVIATE_OUT: dict[str, str] = {
    "text": "textVectors",
    "image": "imageVectors",
    "audio": "audioVectors",
    "video": "videoVectors",
    "imu": "imuVectors",
    "thermal": "thermalVectors",
    "depth": "depthVectors",
}
KINDS: tuple[str, ...] = ("text", "image", "audio", "video", "depth", "thermal", "imu")


class VectorizeRequest(BaseModel):
    """Body of ``POST /vectorize`` (every key optional; media as base64 of the file bytes)."""

    model_config = ConfigDict(extra="ignore")
    texts: list[str] | None = Field(None, description="texts to embed")
    images: list[str] | None = Field(None, description="base64 image files (PNG, JPEG, ...)")
    audio: list[str] | None = Field(None, description="base64 audio files (WAV, FLAC, MP3, ...)")
    video: list[str] | None = Field(None, description="base64 video files (MP4, WebM, ...)")
    imu: list[str] | None = Field(None, description="base64 IMU CSV files with named accel/gyro columns")
    thermal: list[str] | None = Field(None, description="base64 thermal images")
    depth: list[str] | None = Field(None, description="base64 depth maps (16-bit PNG in mm, or 8-bit relative)")


class VectorizeResponse(BaseModel):
    """Body of a 200 answer to ``POST /vectorize``: one vector per input, in input order; ``[]`` when unused."""

    textVectors: list[list[float]]
    imageVectors: list[list[float]]
    audioVectors: list[list[float]]
    videoVectors: list[list[float]]
    imuVectors: list[list[float]]
    thermalVectors: list[list[float]]
    depthVectors: list[list[float]]


class EmbeddingsRequest(BaseModel):
    """Body of ``POST /v1/embeddings`` (OpenAI's, plus ``modality``)."""

    model_config = ConfigDict(extra="ignore")
    input: str | list[str] = Field(..., description="one input or a list; media as data:<mime>;base64,... URIs")
    model: str | None = Field(None, description="accepted for compatibility; the server has one model")
    encoding_format: Literal["float", "base64"] = Field("float", description="float lists, or base64 of "
                                                        "little-endian float32 bytes")
    modality: str = Field("text", description="text, image, audio, video, depth, thermal or imu")
    dimensions: int | None = Field(None, description="must equal the model's dimension when given")
    user: str | None = None


class SearchRequest(BaseModel):
    """Body of ``POST /search``: one query built from any mix of inputs (embedding arithmetic)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="query text")
    image: str | None = Field(None, description="base64 image")
    audio: str | None = Field(None, description="base64 audio file")
    video: str | None = Field(None, description="base64 video file")
    depth: str | None = Field(None, description="base64 depth map")
    thermal: str | None = Field(None, description="base64 thermal image")
    imu: str | None = Field(None, description="base64 IMU CSV")
    vector: list[float] | None = Field(None, description="a raw query vector (unit length after normalising)")
    weights: dict[str, float] | None = Field(None, description="weight per input kind (default 1 each)")
    k: int = Field(10, ge=0, le=10_000, description="hits per result modality")
    modalities: list[str] | None = Field(None, description="result modalities (default: all in the index)")
    where: dict[str, Any] | None = Field(None, description="metadata filter, see bindkit.index.where")


class AddItem(BaseModel):
    """One item of ``POST /add``: ``text`` for text, else ``data`` (base64 of the file)."""

    model_config = ConfigDict(extra="forbid")
    modality: str
    text: str | None = None
    data: str | None = None
    metadata: dict[str, Any] | None = None


class AddRequest(BaseModel):
    """Body of ``POST /add`` (only with ``--allow-writes``)."""

    model_config = ConfigDict(extra="forbid")
    items: list[AddItem]


class RemoveRequest(BaseModel):
    """Body of ``POST /remove`` (only with ``--allow-writes``): ids and/or a metadata filter."""

    model_config = ConfigDict(extra="forbid")
    ids: list[int] | None = None
    where: dict[str, Any] | None = None


# ---- parsing -----------------------------------------------------------------------------------------------------
def parse_json(body: bytes) -> Any:
    """The JSON value of a request body (read as JSON whatever its Content-Type, as Weaviate sends none).
    An empty body is ``{}``. 400 when it is not JSON."""
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                       f"{exc.colno})") from None
    except RecursionError:  # arrays/objects nested thousands deep: Python's parser gives up
        raise ApiError(400, "the request body nests JSON arrays/objects too deeply to read (Python's parser stops "
                       "near 1000 levels); no request needs more than a few") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's int_max_str_digits)
        raise ApiError(400, "the request body is JSON that cannot be read: "
                       f"{describe_exc(exc, with_type=False).split(';')[0]}; "
                       "integers must have at most 4300 digits") from None


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validate(model: type[BaseModel], data: Any) -> Any:
    """``model.model_validate(data)``; 422 naming the first wrong field (``images[2]: ...``) otherwise."""
    if not isinstance(data, dict):
        raise ApiError(422, f"the request body must be a JSON object, got {_json_type(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if p not in ("str", "list[str]"))  # union branch names
        where = _loc(loc)
        got = err.get("input")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "missing":
            reason = "required field missing"
        else:
            reason = f"{err['msg'].lower()} (got {_json_type(got)})"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ApiError(422, f"{where}: {reason}{more}", param=where) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_DATA_URI = re.compile(r"^data:([^,;]*)((?:;[^,;=]+=[^,;]*)*)(;base64)?,", re.IGNORECASE)
_WS = re.compile(rb"\s+")


def decode_media(text: str, label: str) -> bytes:
    """Bytes of a base64 string or ``data:`` URI; 400 naming ``label`` when it is not valid base64.
    Whitespace (line breaks of MIME base64) is dropped and missing ``=`` padding added."""
    m = _DATA_URI.match(text[:512])
    if m:
        payload = text[m.end():]
        if not m.group(3):
            raise ApiError(400, f"{label}: a data: URI must be base64-encoded (data:<mime>;base64,...)", param=label)
    else:
        payload = text
    raw = _WS.sub(b"", payload.encode("ascii", errors="replace"))
    if not raw:
        raise ApiError(422, f"{label}: empty input (no bytes)", param=label)
    if len(raw) % 4:
        raw += b"=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        bad = next((chr(c) for c in raw if not (chr(c).isalnum() or chr(c) in "+/=")), None)
        why = f"invalid character {bad!r}" if bad else "wrong length or padding"
        raise ApiError(400, f"{label}: not valid base64 ({why}); send the file's bytes as standard base64",
                       param=label) from None
    if not data:
        raise ApiError(422, f"{label}: empty input (no bytes)", param=label)
    return data


def encode_float32_base64(row: np.ndarray) -> str:
    """OpenAI's ``encoding_format="base64"``: base64 of the little-endian float32 bytes of one vector."""
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")
