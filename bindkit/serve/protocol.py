"""Request and response shapes of the server's three protocols, and the parsing that turns a request body
into typed inputs or an :class:`~bindkit.serve.errors.ApiError` naming the field at fault.

* **Weaviate multi2vec-bind** (``POST /vectorize``): seven optional lists in, seven ``*Vectors`` lists out.
* **OpenAI embeddings** (``POST /v1/embeddings``): ``input`` (a string or a list of them), ``encoding_format``
  ``float`` or ``base64`` (little-endian float32 bytes, as OpenAI encodes them), plus bindkit's ``modality``
  (without it, ``data:`` URIs are embedded as the kind their MIME type names, other strings as text).
* **bindkit search** (``POST /search``, ``/add``, ``/remove``); item ids travel as JSON strings (64-bit ids
  lose precision as JavaScript numbers) and are accepted as strings or numbers.

Media travel as standard base64 of the file's bytes (line breaks and other whitespace tolerated, missing
padding tolerated) or as ``data:<mime>;base64,<...>`` URIs. URLs are never fetched.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

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
    input: str | list[str] = Field(..., description="one input or a list; media as data:<mime>;base64,... URIs "
                                   "(token arrays are refused: bindkit tokenizes text itself)")
    model: str | None = Field(None, description="accepted for compatibility; the server has one model")
    encoding_format: Literal["float", "base64"] = Field("float", description="float lists, or base64 of "
                                                        "little-endian float32 bytes")
    modality: str | None = Field(None, description="text, image, audio, video, depth, thermal or imu; default: "
                                 "each data: URI's MIME type (image/*, audio/*, video/*, text/plain), else text")
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
    ids: list[StrictInt | StrictStr | StrictFloat] | None = Field(
        None, description="item ids, as strings of digits (as /search and /add return them) or as integers")
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


#: The names pydantic puts in the location of a union's errors (one per branch tried).
_UNION_BRANCHES = frozenset({"str", "list[str]", "int", "float"})


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
        errors = exc.errors()
        # of the first field's errors, the most specific: a union's list branch names the item (input[1])
        err = max((e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]), key=lambda e: len(e["loc"]))
        loc = tuple(p for p in err["loc"] if p not in _UNION_BRANCHES)
        where = _loc(loc)
        got = err.get("input")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "missing":
            reason = "required field missing"
        else:
            reason = f"{err['msg'].lower()} (got {_json_type(got)})"
        others = {tuple(p for p in e["loc"] if p not in _UNION_BRANCHES) for e in errors}
        others = {o for o in others if o != loc[:len(o)]}  # not the same problem seen from a union's other branch
        more = f" (and {len(others)} more problem(s))" if others else ""  # a union's branches: one problem
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
#: What ``\s`` matches in a bytes pattern; dropped with ``bytes.translate`` (C speed: 0.6 ms per MB here, where
#: ``re.sub`` took 12 ms per MB - 0.7 s of held GIL for a 61 MB body).
_WS = b" \t\n\r\f\v"


def decode_media(text: str, label: str) -> bytes:
    """Bytes of a base64 string or ``data:`` URI; 400 naming ``label`` when it is not valid base64.
    Whitespace (line breaks of MIME base64) is dropped and missing ``=`` padding added."""
    m = _DATA_URI.match(text[:512])
    if m:
        payload = text[m.end():]
        if not m.group(3):
            raise ApiError(400, f"{label}: a data: URI must be base64-encoded (data:<mime>;base64,...)", param=label)
    else:
        refuse_url(text, label)
        payload = text
    parts: list[bytes] = []
    carry = b""
    for at in range(0, len(payload), _B64_CHUNK):  # in slices: the GIL is let go between them (see below)
        raw = carry + payload[at:at + _B64_CHUNK].encode("ascii", errors="replace").translate(None, _WS)
        last = at + _B64_CHUNK >= len(payload)
        cut = len(raw) if last else len(raw) - len(raw) % 4
        if last and cut % 4:
            raw += b"=" * (-cut % 4)
        if not last and b"=" in raw[:cut]:
            _bad_base64(label, b"=")
        try:
            parts.append(base64.b64decode(raw if last else raw[:cut], validate=True))
        except (binascii.Error, ValueError):
            _bad_base64(label, raw)
        carry = b"" if last else raw[cut:]
    data = b"".join(parts)
    if not data:
        raise ApiError(422, f"{label}: empty input (no bytes)", param=label)
    return data


#: Characters of base64 decoded per slice: a 60 MB item decoded at once holds the GIL (and so the event loop,
#: /.well-known/live included) for a few hundred milliseconds; per 1 MB slice, a few.
_B64_CHUNK = 1 << 20


def _bad_base64(label: str, raw: bytes) -> None:
    bad = next((chr(c) for c in raw if not (chr(c).isalnum() or chr(c) in "+/=")), None)
    why = f"invalid character {bad!r}" if bad else "wrong length or padding"
    raise ApiError(400, f"{label}: not valid base64 ({why}); send the file's bytes as standard base64",
                   param=label) from None


def encode_float32_base64(row: np.ndarray) -> str:
    """OpenAI's ``encoding_format="base64"``: base64 of the little-endian float32 bytes of one vector."""
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")


# ---- URLs, data: URIs and token arrays -----------------------------------------------------------------------------
_URL = re.compile(r"^\s*([a-z][a-z0-9+.-]*)://\S", re.IGNORECASE)
_MIME = re.compile(r"^\s*([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)\s*$", re.IGNORECASE)
#: The MIME top-level type of a data: URI -> the input kind it is embedded as when no ``modality`` is given.
MIME_KINDS: dict[str, str] = {"image": "image", "audio": "audio", "video": "video"}


def refuse_url(text: str, label: str) -> None:
    """400 when ``text`` is a URL (``https://...``, ``file://...``): the server never fetches URLs nor reads
    paths; the message says to send the bytes instead."""
    m = _URL.match(text[:64])
    if m:
        raise ApiError(400, f"{label}: {m.group(1).lower()}:// URLs are not fetched (the server never downloads "
                       "or opens what a request names); send the file's bytes as base64 or as a data: URI "
                       "(data:image/png;base64,...)", param=label)


def refuse_token_arrays(data: Any) -> None:
    """400 when ``input`` of ``/v1/embeddings`` is token ids (a list of ints, or of lists of ints) instead of
    strings, as LangChain's ``OpenAIEmbeddings`` sends by default: those are ids of OpenAI's tokenizer
    (tiktoken), meaningless to bindkit's CLIP tokenizer. The message says how to make the client send text."""
    if not isinstance(data, dict):
        return
    value = data.get("input")
    if not isinstance(value, list) or not value:
        return

    def is_id(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    flat = all(is_id(x) for x in value)
    nested = all(isinstance(x, list) and all(is_id(t) for t in x) for x in value)
    if flat or nested:
        shape = "a list of token ids" if flat else "lists of token ids"
        raise ApiError(400, f"input: got {shape}; bindkit tokenizes text itself (CLIP's tokenizer, not OpenAI's "
                       "tiktoken), so send the texts as strings. LangChain's OpenAIEmbeddings sends token ids by "
                       "default: create it with OpenAIEmbeddings(..., check_embedding_ctx_length=False)",
                       param="input")


def infer_kind(text: str, label: str) -> tuple[str, str]:
    """(input kind, payload) of one ``/v1/embeddings`` input given without ``modality``: a ``data:`` URI is the
    kind its MIME type names (``image/*`` image, ``audio/*`` audio, ``video/*`` video; ``text/plain`` is text,
    its payload decoded), any other string text. 400 for a URL (never fetched) and for a data: URI whose MIME
    type names no kind bindkit can infer (depth, thermal and IMU need ``modality``)."""
    m = _DATA_URI.match(text[:512])
    mime = _MIME.match(m.group(1)) if m else None
    if mime is None:  # plain text (or text that merely starts with "data:")
        if _URL.match(text[:64]) and not any(c.isspace() for c in text.strip()):
            raise ApiError(400, f"{label}: a URL, and URLs are not fetched (the server never downloads what a "
                           "request names); send the file as a data: URI (data:image/png;base64,...), or "
                           "\"modality\": \"text\" to embed the URL itself as text", param=label)
        return "text", text
    top, sub = mime.group(1).lower(), mime.group(2).lower()
    if top in MIME_KINDS:
        return MIME_KINDS[top], text
    if (top, sub) == ("text", "plain"):
        return "text", _data_uri_text(text, m, label)
    raise ApiError(400, f"{label}: cannot tell the modality of a data:{top}/{sub} URI (image/*, audio/*, video/* "
                   "and text/plain are recognised); give \"modality\" (e.g. \"depth\", \"thermal\" or \"imu\")",
                   param=label)


def _data_uri_text(text: str, m: re.Match, label: str) -> str:
    """The text a ``data:text/plain[;charset=...][;base64],...`` URI carries."""
    from urllib.parse import unquote_to_bytes

    params = dict(p.split("=", 1) for p in m.group(2).split(";")[1:] if "=" in p)
    charset = params.get("charset", "utf-8").strip('"') or "utf-8"
    raw = decode_media(text, label) if m.group(3) else unquote_to_bytes(text[m.end():])
    try:
        return raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise ApiError(400, f"{label}: the data:text/plain URI is not valid {charset} text", param=label) from None


def parse_ids(values: list[int | str | float], field: str = "ids") -> list[int]:
    """Item ids given as integers or strings of digits (as the server writes them) -> ints in [0, 2**63);
    422 naming ``ids[i]`` otherwise. A number with a fraction or an exponent is refused: a 64-bit id that went
    through a float (JavaScript's numbers) has lost its last digits, and would silently match nothing."""
    out = []
    for i, v in enumerate(values):
        if isinstance(v, float):
            raise ApiError(422, f"{field}[{i}]: {v!r} is not an item id (a number with a fraction or an exponent "
                           "has lost the last digits of a 64-bit id); send ids as the strings /search and /add "
                           "return", param=f"{field}[{i}]")
        text = v.strip() if isinstance(v, str) else None
        if text is not None and not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise ApiError(422, f"{field}[{i}]: an item id is a whole number (as a string of digits or an integer), "
                           f"got {v[:40]!r}", param=f"{field}[{i}]")
        n = int(text) if text is not None else int(v)
        if not 0 <= n < 2**63:
            raise ApiError(422, f"{field}[{i}]: item ids are in [0, 2**63), got {n}; no item has that id",
                           param=f"{field}[{i}]")
        out.append(n)
    return out
