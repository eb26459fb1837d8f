"""IMU loader: a CSV with named columns (or a .npy / array) -> channels x length float32 (6 x 2000).

Channels are found **by name**, never by position, and put in the card order (accelerometer x/y/z then
gyroscope x/y/z). Header names are matched case-insensitively after dropping units in brackets and
punctuation: ``accel_x``, ``accl_x``, ``acc_x``, ``accelerometer_x``, ``acceleration_x``, ``ax``, ``AccX``,
``gyro_x``, ``gyr_x``, ``gyroscope_x``, ``gx``, ``gyro_x (rad/s)``... Extra columns (timestamps) are ignored.
Rows are time and columns channels, so the data is transposed (never reshaped) to channels x time.
``.npy`` files and arrays hold 6 x T or T x 6 (T x 6 when both are 6) in card order, or name their
columns with the ``columns`` option (which also names the columns of a header-less CSV).

Fitting to ``length`` steps (``fit``):

* ``"resample"`` (card default): without ``sample_rate`` (the recording's rate, unknown for a bare CSV) the
  whole recording is linearly interpolated to ``length`` steps (first and last samples kept). With
  ``sample_rate`` it is linearly resampled to ``target_rate`` (the card's 400 Hz, so ``length`` = 5 s), then
  the centre ``length`` steps are kept, or it is zero-padded at the end when shorter.
* ``"crop_pad"``: no resampling; centre crop, or zero-pad at the end.

``accel_scale``/``gyro_scale`` multiply the channels (unit conversion, e.g. 9.81 for g -> m/s^2);
``normalize=True`` standardises each channel over time (before padding). NaN or inf is an InputError.

CSVs are parsed as a stream into 8-byte floats (a 171 MB CSV no longer takes gigabytes), and one with more
than ``max_rows`` data rows (default 2,000,000: 83 minutes at 400 Hz) is refused with an InputError that names
the option (``options={"imu": {"max_rows": N}}``, ``bindkit embed -o imu.max_rows=N``): the model sees
``length`` steps of it anyway.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .image import load_npy
from .sources import Source

DEFAULTS: dict[str, Any] = {
    "channels": ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"],
    "length": 2000,
    "target_rate": 400.0,
    "sample_rate": None,
    "fit": "resample",
    "normalize": False,
    "columns": None,
    "accel_scale": 1.0,
    "gyro_scale": 1.0,
    "max_rows": 2_000_000,
}
#: The card's ``sample_rate`` is the rate the model expects; ``sample_rate`` as an option is the recording's.
CARD_RENAMES = {"sample_rate": "target_rate"}
_FITS = ("resample", "crop_pad")

_NAME = re.compile(
    r"(accelerometer|acceleration|accel|accl|acc|a|gyroscope|gyro|gyr|g)_?([xyz])(?:_.*)?"
)


def canonical_channel(name: str) -> str | None:
    """``"accel_x"``..``"gyro_z"`` for a recognised column name, else None (``"AccX [m/s^2]"`` -> ``accel_x``)."""
    s = re.sub(r"\(.*?\)|\[.*?\]", "", str(name)).strip()
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()  # AccX -> acc_x
    s = re.sub(r"[^a-z0-9]+", "_", s).strip("_")
    m = _NAME.fullmatch(s)
    if not m:
        return None
    return ("accel" if m.group(1).startswith("a") else "gyro") + "_" + m.group(2)


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one preprocessed recording: (len(channels), length)."""
    return (len(p["channels"]), int(p["length"]))


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    if p["fit"] not in _FITS:
        raise ValueError(f"fit must be one of {', '.join(_FITS)}, got {p['fit']!r}")
    bad = [c for c in p["channels"] if canonical_channel(c) is None]
    if bad:
        raise ValueError(f"unrecognised channel name(s) {bad}; use accel_x..accel_z, gyro_x..gyro_z")
    if int(p["length"]) <= 0 or float(p["target_rate"]) <= 0:
        raise ValueError("length and target_rate must be positive")
    if p["sample_rate"] is not None and float(p["sample_rate"]) <= 0:
        raise ValueError(f"sample_rate must be positive, got {p['sample_rate']!r}")
    if isinstance(p["max_rows"], bool) or not isinstance(p["max_rows"], int) or p["max_rows"] <= 0:
        raise ValueError(f"max_rows must be a positive whole number, got {p['max_rows']!r}")
    if p["columns"] is not None and len(set(map(canonical_channel, p["columns"])) - {None}) == 0:
        raise ValueError("columns names no recognisable channel")


def _text_lines(src: Source) -> Iterator[str]:
    """The CSV's non-blank, non-comment lines, decoded as UTF-8 (BOM dropped) while streaming."""
    if src.path is not None:
        try:
            raw: Any = open(src.path, "rb")
        except OSError as exc:
            raise src.fail(f"cannot read the file ({exc.strerror or exc})") from None
    else:
        raw = io.BytesIO(src.data or b"")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None) as text:
        try:
            for line in text:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield line.rstrip("\n")
        except UnicodeDecodeError:
            raise src.fail("not a text CSV file (invalid UTF-8)") from None
        except OSError as exc:
            raise src.fail(f"cannot read the file ({exc.strerror or exc})") from None


def _read_csv(src: Source, p: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """(T x C float array, column names), parsed row by row (see the module docstring for ``max_rows``)."""
    lines = _text_lines(src)
    first = next(lines, None)
    if first is None:
        raise src.fail("empty CSV (no rows)")
    delim = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    header = [h.strip().strip('"').strip("'") for h in next(csv.reader([first], delimiter=delim))]
    if all(_is_number(h) for h in header):
        if p["columns"] is None:
            raise src.fail(
                "CSV has no header naming its channels; add one (e.g. accel_x,...,gyro_z) or pass columns=[...]"
            )
        names = list(p["columns"])
        body: Iterator[str] = _chain(first, lines)
    else:
        names, body = header, lines
    limit = int(p["max_rows"])
    values = array("d")
    rows = 0
    nan = float("nan")
    for row in csv.reader(body, delimiter=delim):
        if len(row) != len(names):
            raise src.fail(f"rows have {len(row)} fields but the header names {len(names)} columns (data row "
                           f"{rows + 1})")
        rows += 1
        if rows > limit:
            raise src.fail(f"more than {limit} data rows; the model sees {p['length']} steps of a recording, so "
                           f"embed a shorter excerpt, or raise the limit with the imu option max_rows "
                           f"(options={{'imu': {{'max_rows': N}}}}, bindkit embed -o imu.max_rows=N)")
        size = len(values)
        try:
            values.extend(map(float, row))
        except ValueError:  # an empty cell (NaN, reported later with its place) or a non-numeric value
            del values[size:]
            try:
                values.extend(float(v) if v.strip() else nan for v in row)
            except ValueError as exc:
                raise src.fail(f"non-numeric value in the CSV ({exc})") from None
    if not rows:
        raise src.fail("CSV has a header but no data rows")
    return np.frombuffer(values, dtype=np.float64).reshape(rows, len(names)), names


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_array(obj: Any, src: Source, p: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else np.asarray(obj)
    names = list(p["columns"] or p["channels"])
    k = len(names)
    if a.ndim != 2 or k not in a.shape or min(a.shape) == 0:
        raise src.fail(f"wrong array shape {tuple(a.shape)}; expected {k} x T or T x {k}")
    if not np.issubdtype(a.dtype, np.number):
        raise src.fail(f"unsupported array dtype {a.dtype}")
    if a.shape[1] != k:
        a = a.T  # channels x time -> time x channels (a transpose, never a reshape)
    return a.astype(np.float64), names


def _select(data: np.ndarray, names: list[str], p: dict[str, Any], src: Source) -> np.ndarray:
    """channels x T in card order, from T x C data with column ``names``."""
    where: dict[str, int] = {}
    for i, n in enumerate(names):
        c = canonical_channel(n)
        if c is None:
            continue
        if c in where:
            raise src.fail(f"two columns map to {c}: {names[where[c]]!r} and {n!r}; rename one")
        where[c] = i
    wanted = [canonical_channel(c) for c in p["channels"]]
    missing = [c for c in wanted if c not in where]
    if missing:
        raise src.fail(f"missing channel(s) {', '.join(missing)}; columns are {', '.join(map(str, names))}")
    x = data[:, [where[c] for c in wanted]].T.copy()
    for row, c in enumerate(wanted):
        x[row] *= float(p["accel_scale"] if c.startswith("accel") else p["gyro_scale"])
    return x


def fit(x: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """channels x T -> channels x length by the ``fit`` rule (see the module docstring)."""
    length = int(p["length"])
    if p["fit"] == "resample" and p["sample_rate"] is None:
        return _interp(x, length)
    if p["fit"] == "resample":
        steps = max(1, round(x.shape[1] * float(p["target_rate"]) / float(p["sample_rate"])))
        x = _interp(x, steps)
    t = x.shape[1]
    if t >= length:
        a = (t - length) // 2
        return x[:, a : a + length]
    return F.pad(x, (0, length - t))


def _interp(x: torch.Tensor, steps: int) -> torch.Tensor:
    if x.shape[1] == steps:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, steps).clone()
    return F.interpolate(x[None], size=steps, mode="linear", align_corners=True)[0]


def load(src: Source, p: dict[str, Any]) -> torch.Tensor:
    """One recording -> float32 tensor (len(channels), length)."""
    if src.obj is not None:
        data, names = _read_array(src.obj, src, p)
    elif src.ext == ".npy":
        data, names = _read_array(load_npy(src), src, p)
    else:
        data, names = _read_csv(src, p)
    x = _select(data, names, p, src)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise src.fail(f"NaN or inf (or an empty cell) in channel {p['channels'][bad[0]]} at row {bad[1]}")
    t = torch.from_numpy(x)
    if p["normalize"]:
        t = (t - t.mean(dim=1, keepdim=True)) / (t.std(dim=1, keepdim=True) + 1e-6)
    return fit(t, p).float().contiguous()
