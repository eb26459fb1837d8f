"""Pair manifests: read, validate, split, and load them in batches for training.

A manifest is a CSV, JSONL or Parquet table with two columns named by modality (``image,text``,
``image,audio``, ``video,audio``, ...; aliases such as ``vision`` accepted). Media columns hold paths, relative
to the manifest's folder (absolute paths work too); a ``text`` column holds the text itself. An optional
``label`` column says which rows belong to the same class: with label pairing (the default when the column
exists) each item's partner is redrawn every epoch among the other side's items of its label, and items of one
label in a batch are positives of each other. Other columns (``id``, ...) are ignored, except names that look
like a mistyped modality, which are an error.

Validation happens before training: a missing or unreadable manifest, fewer or more than two modality
columns, an unknown column that looks like a typo, no rows, or more bad rows (missing files, empty cells) than
``max_bad_fraction`` raise :class:`ManifestError` with the first offending rows. A few bad rows
are skipped and counted. Media that exist but cannot be decoded are found at load time: they are skipped and
counted, never a crash mid-epoch.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .. import tables
from ..errors import InputError, ManifestError  # noqa: F401  (ManifestError moved to bindkit.errors)
from ..fileio import hash_file_into
from ..modality import INPUT_KINDS, _ALIASES, encoder_of, input_kind
from ..tables import TableError

_SHOW = 5
#: The column that holds each row's class (case-insensitive).
LABEL_COLUMN = "label"
#: ``--pairing`` choices.
PAIRINGS = ("auto", "label", "instance")


@dataclass
class Manifest:
    """One validated pair manifest. ``a``/``b`` are input kinds (``image``, ``text``...); ``rows`` holds the
    usable rows as (item_a, item_b) with media paths made absolute; ``bad`` the rows skipped at validation."""

    path: Path
    a: str
    b: str
    rows: list[tuple[str, str]]
    sha256: str
    bad: list[tuple[int, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    train_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: Per usable row: its class id (index into ``label_names``), from the ``label`` column; None without one.
    labels: np.ndarray | None = None
    label_names: list[str] = field(default_factory=list)
    #: "label" (partners redrawn among same-label rows, same-label items are positives) or "instance".
    pairing: str = "instance"

    @property
    def pair(self) -> str:
        """``"image-text"``: the pair type, used in metric names."""
        return f"{self.a}-{self.b}"

    @property
    def name(self) -> str:
        """A short unique-enough label: the file name and the pair type."""
        return f"{self.path.name} ({self.pair})"


def _read_table(path: Path) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """(columns, rows, line each row starts on) of a manifest (:func:`bindkit.tables.read_table`); ManifestError
    naming the file, and the line where it applies."""
    if tables.table_format(path) is None:
        raise ManifestError(f"manifest {path}: unknown format {path.suffix!r}; use .csv, .jsonl or .parquet")
    try:
        table = tables.read_table(path)
    except TableError as exc:
        raise ManifestError(f"manifest {path} {exc}" if exc.line is not None else f"manifest {path}: {exc}") from None
    return table.columns, table.rows, table.lines


def _modality_columns(path: Path, columns: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """([(column, kind)], ignored columns); ManifestError for a column that looks like a mistyped modality."""
    names = list(INPUT_KINDS) + list(_ALIASES)
    found, ignored = [], []
    for col in columns:
        try:
            found.append((col, input_kind(col)))
        except Exception:
            close = difflib.get_close_matches(col.lower(), names, n=1, cutoff=0.75)
            if close:
                raise ManifestError(
                    f"manifest {path}: unknown column {col!r} (did you mean {close[0]!r}?); pair columns are named "
                    f"by modality: {', '.join(INPUT_KINDS)}"
                ) from None
            ignored.append(col)
    if len(found) != 2 or found[0][1] == found[1][1]:
        got = ", ".join(c for c, _ in found) or "none"
        raise ManifestError(
            f"manifest {path}: needs exactly two columns named by different modalities ({', '.join(INPUT_KINDS)}), "
            f"e.g. image,text; it has {got}" + (f" (other columns, ignored: {', '.join(ignored)})" if ignored else "")
            + ". Split a manifest of more modalities into one per pair (image,audio / image,text)."
        )
    return found, ignored


def read_manifest(path: str | os.PathLike, *, max_bad_fraction: float = 0.05) -> Manifest:
    """Read and validate one pair manifest (see the module docstring). Does not decode media."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    columns, records, lines = _read_table(path)
    pairs, ignored = _modality_columns(path, columns)
    (col_a, a), (col_b, b) = pairs
    if not records:
        raise ManifestError(f"manifest {path} has no rows")
    base = path.parent
    label_col = next((c for c in ignored if c.strip().lower() == LABEL_COLUMN), None)
    rows: list[tuple[str, str]] = []
    row_labels: list[str] = []
    bad: list[tuple[int, str]] = []
    for n, rec in zip(lines, records):
        values, reason = [], None
        for col, kind in ((col_a, a), (col_b, b)):
            v = rec.get(col)
            v = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            if not v.strip():
                reason = f"empty {col!r} cell"
                break
            if kind != "text":
                if "://" in v:
                    reason = f"{col} {v!r} is a URL; manifests hold local paths"
                    break
                p = (base / v).resolve() if not os.path.isabs(v) else Path(v)
                if not p.is_file():
                    reason = f"{col} file {v!r} not found (looked for {p})"
                    break
                v = str(p)
            values.append(v)
        if reason:
            bad.append((n, reason))
        else:
            rows.append((values[0], values[1]))
            if label_col is not None:
                lab = rec.get(label_col)
                lab = "" if lab is None or (isinstance(lab, float) and math.isnan(lab)) else str(lab).strip()
                # a row without a label is a class of its own: it keeps its partner and has no other positives
                row_labels.append(lab or f"\0row{n}")
    if bad and (not rows or len(bad) > max_bad_fraction * len(records)):
        shown = "; ".join(f"row {n}: {why}" for n, why in bad[:_SHOW])
        more = f" (+{len(bad) - _SHOW} more)" if len(bad) > _SHOW else ""
        raise ManifestError(
            f"manifest {path}: {len(bad)} of {len(records)} rows are unusable — {shown}{more}. Paths are relative "
            f"to the manifest's folder ({base}). Fix them, or allow more skipped rows with --max-bad-rows "
            f"(now {max_bad_fraction:g} of the rows)"
        )
    sha = hash_file_into(hashlib.sha256(), path).hexdigest()
    out = Manifest(path=path, a=a, b=b, rows=rows, sha256=sha, bad=bad,
                   ignored_columns=[c for c in ignored if c != label_col])
    if label_col is not None:
        out.label_names = sorted(set(row_labels))
        ids = {name: i for i, name in enumerate(out.label_names)}
        out.labels = np.array([ids[x] for x in row_labels], dtype=np.int64)
    return out


def set_pairing(manifest: Manifest, pairing: str) -> None:
    """Choose how ``manifest``'s rows pair: ``auto`` (label pairing when it has a label column), ``label`` or
    ``instance`` (each row's two items are the pair, as written). ManifestError for ``label`` without labels."""
    if pairing not in PAIRINGS:
        raise ManifestError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    if pairing == "label" and manifest.labels is None:
        raise ManifestError(f"manifest {manifest.path}: --pairing label needs a {LABEL_COLUMN!r} column (the class "
                            "of each row); add one, or use --pairing instance")
    manifest.pairing = "label" if pairing != "instance" and manifest.labels is not None else "instance"


def partners(manifest: Manifest, seed: int, epoch: int) -> np.ndarray | None:
    """For label pairing: per row, the row whose other-side item it is paired with in ``epoch`` — drawn uniformly
    among the training rows of the same label (a function of seed and epoch only, so resumes and ranks agree).
    Held-out rows keep their own partner. None for instance pairing."""
    if manifest.pairing != "label" or manifest.labels is None:
        return None
    out = np.arange(len(manifest.rows), dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(epoch), 104729])
    train = np.asarray(manifest.train_idx, dtype=np.int64)
    labs = manifest.labels[train]
    for lab in np.unique(labs):
        group = train[labs == lab]
        out[group] = group[rng.integers(0, len(group), size=len(group))]
    return out


def media_digest(manifest: Manifest, max_bytes: int = 1 << 30) -> dict[str, Any]:
    """One sha256 over the media a manifest uses (each file's relative path and content, in row order), so a
    training record identifies its data and not only the list of names. Skipped (``sha256`` None) when the files
    total more than ``max_bytes``."""
    files = []
    for row in manifest.rows:
        for kind, value in zip((manifest.a, manifest.b), row):
            if kind != "text":
                files.append(Path(value))
    total = sum(f.stat().st_size for f in set(files))
    if total > max_bytes:
        return {"files": len(set(files)), "bytes": total, "sha256": None, "note": "too large to hash"}
    h = hashlib.sha256()
    seen: dict[Path, str] = {}
    for f in files:
        if f not in seen:
            seen[f] = hash_file_into(hashlib.sha256(), f).hexdigest()
        rel = os.path.relpath(f, manifest.path.parent)
        h.update(f"{rel}\0{seen[f]}\n".encode())
    return {"files": len(seen), "bytes": total, "sha256": h.hexdigest()}


def split(manifest: Manifest, val_split: float, seed: int) -> None:
    """Set ``train_idx``/``val_idx``: a seeded shuffle of the rows, the first ``ceil(val_split * n)`` held out.
    ManifestError when a split that should have rows is empty (or the training side has fewer than 2 pairs)."""
    n = len(manifest.rows)
    order = np.random.default_rng([int(seed), 7919]).permutation(n)
    n_val = int(math.ceil(val_split * n)) if val_split > 0 else 0
    manifest.val_idx = np.sort(order[:n_val])
    manifest.train_idx = np.sort(order[n_val:])
    if val_split > 0 and n_val == 0:  # pragma: no cover - ceil makes this impossible for n >= 1
        raise ManifestError(f"manifest {manifest.path}: --val-split {val_split:g} leaves no validation rows")
    if len(manifest.train_idx) < 2:
        raise ManifestError(
            f"manifest {manifest.path}: the training split is empty or has one pair ({len(manifest.train_idx)} of "
            f"{n} usable rows after --val-split {val_split:g}); contrastive training needs at least 2 pairs — add "
            "rows or lower --val-split"
        )


# --- batch plan -------------------------------------------------------------------------------------------

def steps_per_epoch(n_train: Sequence[int], batch_size: int) -> int:
    """Optimizer steps in one epoch: batches of the largest manifest (the last partial batch is dropped,
    unless the manifest is smaller than one batch); smaller manifests cycle through their rows meanwhile."""
    return max(max(1, n // batch_size) for n in n_train)


def epoch_batches(n: int, batch_size: int, n_steps: int, seed: int, epoch: int, stream: int) -> list[np.ndarray]:
    """Positions (into a manifest's training rows) of each global batch of one epoch: seeded permutations of
    the ``n`` rows, concatenated as often as ``n_steps`` batches need. Depends only on its arguments, so a resumed
    run and every rank of a distributed run see the same order."""
    b = min(batch_size, n)
    need = n_steps * b
    chunks, cycle = [], 0
    while sum(len(c) for c in chunks) < need:
        rng = np.random.default_rng([int(seed), int(epoch), int(stream), cycle])
        chunks.append(rng.permutation(n))
        cycle += 1
    flat = np.concatenate(chunks)[:need]
    return [flat[i * b:(i + 1) * b] for i in range(n_steps)]


# --- loading ----------------------------------------------------------------------------------------------

@dataclass
class Item:
    """One loaded row: its row index, the two tensors (None for a side served from a cache; a string for
    text), and the reason when it failed to load."""

    row: int
    a: Any
    b: Any
    error: str | None = None
    #: The row the redrawn side came from (label pairing); ``row`` otherwise.
    partner: int = -1


class ItemCache:
    """Preprocessed (not augmented) items kept in memory, up to ``max_bytes``: each file is decoded once per run.
    Failures are remembered too, so a corrupt file is reported once and never decoded again."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.data: dict[tuple[int, str], torch.Tensor | str] = {}

    def get(self, key: tuple[int, str]) -> torch.Tensor | str | None:
        return self.data.get(key)

    def put(self, key: tuple[int, str], value: torch.Tensor | str) -> None:
        size = value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0
        if self.bytes + size <= self.max_bytes:
            self.data[key] = value
            self.bytes += size


class PairDataset(torch.utils.data.Dataset):
    """Rows of one manifest as :class:`Item` s, loaded with the card's loader parameters and, for a key with
    ``epoch >= 0``, augmented. Indexed by ``(row, epoch)``: augmentation is a function of (seed, epoch, row), so
    resuming and distributed ranks reproduce it exactly, whatever the number of loader workers. Epoch -1 means
    no augmentation (evaluation, caches)."""

    def __init__(self, manifest: Manifest, params: dict[str, dict], augment: dict[str, Any],
                 skip_side: set[str], seed: int, cache: ItemCache | None = None, redraw: str = "b"):
        self.m = manifest
        #: With label pairing, the side whose item is redrawn among the row's label every epoch (the other side's
        #: items are each visited once per epoch).
        self.redraw = redraw
        self._partners: tuple[int, np.ndarray | None] | None = None
        self.params = params
        self.augment = augment
        self.skip_side = set(skip_side)
        self.seed = int(seed)
        self.cache = cache if cache is not None else ItemCache(0)

    def __len__(self) -> int:
        return len(self.m.rows)

    def load(self, row: int, side: str) -> torch.Tensor | str:
        """The preprocessed item (cached), or the reason it cannot be loaded."""
        from ..inputs.batch import load_item

        hit = self.cache.get((row, side))
        if hit is not None:
            return hit
        kind = self.m.a if side == "a" else self.m.b
        item = self.m.rows[row][0 if side == "a" else 1]
        try:
            value: torch.Tensor | str = load_item(kind, item, row, self.params[kind])
        except InputError as exc:
            value = f"{kind} {Path(item).name}: {exc.reason}"
        except Exception as exc:  # a loader bug must not stop an epoch either; it is counted and reported
            value = f"{kind} {Path(item).name}: {type(exc).__name__}: {exc}"
        self.cache.put((row, side), value)
        return value

    def __getitem__(self, key: tuple[int, int]) -> Item:
        from .augment import apply

        row, epoch = int(key[0]), int(key[1])
        partner = self.partner_of(row, epoch)
        out: list[Any] = []
        for side, kind in (("a", self.m.a), ("b", self.m.b)):
            src = partner if side == self.redraw else row
            if side in self.skip_side:
                out.append(None)
                continue
            if kind == "text":
                out.append(self.m.rows[src][0 if side == "a" else 1])
                continue
            x = self.load(src, side)
            if isinstance(x, str):
                return Item(row, None, None, x, partner)
            cfg = self.augment.get(kind)
            if cfg is not None and epoch >= 0:
                gen = torch.Generator().manual_seed(_item_seed(self.seed, epoch, row, side))
                x = apply(kind, x, self.params[kind], cfg, gen)
            out.append(x)
        return Item(row, out[0], out[1], None, partner)

    def partner_of(self, row: int, epoch: int) -> int:
        """The row whose redrawn-side item pairs with ``row`` in ``epoch`` (``row`` itself without label pairing
        and for evaluation, epoch < 0)."""
        if epoch < 0 or self.m.pairing != "label":
            return row
        if self._partners is None or self._partners[0] != epoch:
            self._partners = (epoch, partners(self.m, self.seed, epoch))
        table = self._partners[1]
        return row if table is None else int(table[row])


def _item_seed(seed: int, epoch: int, row: int, side: str) -> int:
    h = hashlib.blake2b(f"{seed}:{epoch}:{row}:{side}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


class BatchSampler(torch.utils.data.Sampler):
    """Yields the (row, epoch) keys of this rank's share of each global batch, from ``start`` on."""

    def __init__(self, batches: list[np.ndarray], train_idx: np.ndarray, epoch: int, rank: int, world: int,
                 start: int = 0):
        self.batches, self.train_idx, self.epoch = batches, train_idx, epoch
        self.rank, self.world, self.start = rank, world, start

    def __len__(self) -> int:
        return len(self.batches) - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for pos in self.batches[self.start:]:
            share = shard(pos, self.rank, self.world)
            yield [(int(self.train_idx[p]), self.epoch) for p in share]


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous slice of a global batch (rank order = the single-process batch order, so the
    gathered batch is identical to the one a single process would see)."""
    per = int(math.ceil(len(batch) / world))
    return batch[rank * per:(rank + 1) * per]


@dataclass
class Batch:
    """A collated batch of one manifest: row indices of the usable items, the two sides (tensors; text as a
    list of strings until tokenised; None for a cached side) and the items that failed."""

    rows: torch.Tensor
    a: Any
    b: Any
    failed: list[tuple[int, str]]
    #: Per usable item, the row its redrawn side came from (equal to ``rows`` without label pairing).
    partners: torch.Tensor | None = None


def collate(items: list[Item], text_params: dict | None = None) -> Batch:
    """Stack the usable items; failed ones are dropped and listed (never an exception)."""
    from ..inputs.text import tokenize

    good = [it for it in items if it.error is None]
    failed = [(it.row, it.error) for it in items if it.error is not None]

    def side(values: list[Any]) -> Any:
        if not values or values[0] is None:
            return None
        if isinstance(values[0], str):
            return tokenize(values, text_params) if text_params is not None else list(values)
        return torch.stack(values)

    return Batch(torch.tensor([it.row for it in good], dtype=torch.long), side([it.a for it in good]),
                 side([it.b for it in good]), failed,
                 torch.tensor([it.partner if it.partner >= 0 else it.row for it in good], dtype=torch.long))


def encoders_of(manifests: Sequence[Manifest]) -> list[str]:
    """The encoders the manifests need, in first-seen order."""
    out: list[str] = []
    for m in manifests:
        for kind in (m.a, m.b):
            if encoder_of(kind) not in out:
                out.append(encoder_of(kind))
    return out
