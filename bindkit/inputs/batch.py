"""``preprocess`` (items -> a batch tensor for ``model.encode``) and ``embed`` (items -> unit vectors), with
loading in worker threads, per-item errors, and loader parameters taken from the encoder card."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..cards import Card, load_card
from ..errors import InputError, ModalityError, describe_exc
from ..modality import INPUT_KINDS, encoder_of, input_kind
from ..progress import progress_bar
from . import text as _text
from .sources import to_source

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel


class _Loaders(Mapping[str, Any]):
    """Input kind -> loader module, imported on first use: a text query never pays for torchvision (which
    imports torch._dynamo) or PyAV."""

    def __getitem__(self, kind: str) -> Any:
        if kind not in INPUT_KINDS:
            raise KeyError(kind)
        import importlib

        return importlib.import_module(f"{__package__}.{kind}")

    def __iter__(self):
        return iter(INPUT_KINDS)

    def __len__(self) -> int:
        return len(INPUT_KINDS)


#: The loader module of each input kind: DEFAULTS (every option), shape(p), validate(p), load(src, p).
LOADERS: Mapping[str, Any] = _Loaders()


@dataclass(frozen=True)
class ItemError:
    """An item that could not be embedded: its kind, its position in that kind's list, the item's label (the
    path, or ``"#<index>"`` for in-memory items) and the reason."""

    kind: str
    index: int
    item: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "item": self.item, "reason": self.reason}


class Embeddings(dict):
    """``kind -> float32 array (n_items, dim)`` of unit vectors, row i = item i of that kind in input order.
    Rows of items that failed are all-NaN; ``.errors`` lists them as :class:`ItemError` records."""

    def __init__(self, *args: Any, errors: list[ItemError] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.errors: list[ItemError] = list(errors or [])

    def ok(self, kind: str) -> np.ndarray:
        """Boolean mask (n_items,) of the rows of ``kind`` that were embedded."""
        kind = input_kind(kind)
        mask = np.ones(len(self[kind]), dtype=bool)
        for err in self.errors:
            if err.kind == kind:
                mask[err.index] = False
        return mask

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {v.shape[0]}x{v.shape[1]}" for k, v in self.items())
        return f"Embeddings({parts}; {len(self.errors)} error(s))"


def _card_of(card: Any) -> Card:
    """A Card from a name/path/dict/Card, or the ``.card`` of a model."""
    if hasattr(card, "card") and isinstance(getattr(card, "card"), Card):
        return card.card
    return load_card(card)


def resolve_params(kind: str, card: Any = "imagebind_huge", options: Mapping[str, Any] | None = None) -> dict:
    """Loader parameters for ``kind``: the loader's defaults, overridden by the card's ``preprocess`` section,
    overridden by ``options``. Raises ValueError naming the valid options for an unknown one, or a bad value."""
    mod = LOADERS[kind]
    renames = getattr(mod, "CARD_RENAMES", {})
    from_card = {renames.get(k, k): v for k, v in _card_of(card).preprocess_for(kind).items()}
    params = {**mod.DEFAULTS, **from_card}
    options = dict(options or {})
    unknown = sorted(k for k in options if k not in params)
    if unknown:
        raise ValueError(
            f"unknown {kind} option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(params))}"
        )
    params.update(options)
    mod.validate(params)
    return params


def load_item(kind: str, item: Any, index: int, params: dict) -> torch.Tensor:
    """Load one item; raises InputError (unexpected decoder failures are wrapped, so a bad file never
    surfaces as a library stack trace)."""
    if kind == "text":
        return _text.load(item, params, index)
    src = to_source(item, index, kind)
    try:
        return LOADERS[kind].load(src, params)
    except InputError:
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise src.fail(f"could not be loaded ({describe_exc(exc)})") from exc


def _safe_load(kind: str, item: Any, index: int, params: dict) -> torch.Tensor | InputError:
    try:
        return load_item(kind, item, index, params)
    except InputError as exc:
        return exc


def _as_list(items: Any, kind: str) -> list:
    single = isinstance(items, (str, bytes, os.PathLike, Image.Image)) or not isinstance(items, Iterable)
    single = single or (kind != "text" and hasattr(items, "read"))
    single = single or (kind == "audio" and isinstance(items, tuple) and len(items) == 2
                        and isinstance(items[1], (int, float)) and not isinstance(items[1], bool))
    if single:
        return [items]  # one item (audio: one (waveform, sample_rate) pair)
    if isinstance(items, (np.ndarray, torch.Tensor)):
        raise ValueError(
            f"pass {kind} items as a list (a single array is ambiguous: one item or a batch?); "
            "wrap one array as [array]"
        )
    return list(items)


def _default_workers(n_items: int) -> int:
    return max(1, min(n_items, os.cpu_count() or 1, 8))


def _map_ordered(fn: Callable, args: list[tuple], num_workers: int) -> list:
    if num_workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="bindkit-load") as pool:
        return list(pool.map(lambda a: fn(*a), args))


def preprocess(
    modality: str, items: Any, card: Any = "imagebind_huge", *, num_workers: int | None = None, **options: Any
) -> torch.Tensor:
    """Load ``items`` of one modality into a batch ready for ``model.encode(modality, batch)``.

    Args:
        modality: ``image`` (alias ``vision``), ``video``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``.
        items: a list mixing paths, bytes, binary file objects, PIL images, numpy arrays and tensors (text:
            strings). A single path/string/bytes is one item.
        card: card name, path, dict or :class:`~bindkit.cards.Card`, or a model (its card): the loader
            parameters come from its ``preprocess`` section.
        num_workers: threads loading items in parallel (default: up to the CPU count).
        **options: override card parameters (e.g. ``fit="crop_pad"`` for imu, ``reference_inplace_mean=False``
            for audio); an unknown name raises ValueError listing the valid ones.

    Returns:
        image float32 N x 3 x 224 x 224; video N x 15 x 3 x 2 x 224 x 224; text int64 N x 77; audio
        N x 3 x 1 x 128 x 204; depth and thermal N x 1 x 224 x 224; imu N x 6 x 2000 (huge-card sizes).

    Raises:
        InputError: the first item (in input order) that cannot be loaded.
    """
    kind = input_kind(modality)
    params = resolve_params(kind, card, options)
    items = _as_list(items, kind)
    if not items:
        dtype = torch.int64 if kind == "text" else torch.float32
        return torch.empty((0, *LOADERS[kind].shape(params)), dtype=dtype)
    if kind == "text":
        return _text.tokenize([_text.check_text(t, i) for i, t in enumerate(items)], params)
    workers = _default_workers(len(items)) if num_workers is None else int(num_workers)
    results = _map_ordered(_safe_load, [(kind, it, i, params) for i, it in enumerate(items)], workers)
    for r in results:
        if isinstance(r, InputError):
            raise r
    return torch.stack(results)


_EMBED_OPTIONS = ("batch_size", "show_progress_bar", "strict", "num_workers", "options", "normalize_embeddings")


def embed(
    model: "BindModel",
    *,
    image: Any = None,
    video: Any = None,
    text: Any = None,
    audio: Any = None,
    depth: Any = None,
    thermal: Any = None,
    imu: Any = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    strict: bool = False,
    num_workers: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    normalize_embeddings: bool | None = None,
    **unknown: Any,
) -> "Embeddings":
    """Embed items of any modalities with ``model`` (a BindModel); the sentence-transformers ``encode`` idiom.

    Args:
        image, video, audio, depth, thermal, imu: lists of paths, bytes, binary file objects, PIL images,
            arrays or tensors (see :func:`preprocess`). Aliases such as ``vision=`` are accepted.
        text: list of strings (the text itself, not paths).
        batch_size: items per forward pass.
        show_progress_bar: tqdm bar over all items; None shows it when stderr is a terminal.
        strict: False (default): a bad item gets an all-NaN row and an :class:`ItemError` in ``.errors``, the
            others are embedded; True: the first InputError is raised.
        num_workers: threads that load items while the model runs (default: up to the CPU count).
        options: per-kind loader options, e.g. ``{"imu": {"fit": "crop_pad"}}``.
        normalize_embeddings: accepted for sentence-transformers compatibility; vectors are always unit
            length, so only None/True are allowed.

    Returns:
        :class:`Embeddings`: ``kind -> float32 array (n_items, model.dim)`` of unit vectors in input order,
        for each kind passed.
    """
    inputs = {"image": image, "video": video, "text": text, "audio": audio, "depth": depth,
              "thermal": thermal, "imu": imu}
    for key, value in unknown.items():
        try:
            kind = input_kind(key)
        except ModalityError:
            valid = ", ".join(INPUT_KINDS + _EMBED_OPTIONS)
            raise ValueError(f"embed() got an unknown keyword argument {key!r}; valid ones: {valid}") from None
        if inputs[kind] is not None:
            raise ValueError(f"embed() got {kind} items twice (as {kind!r} and {key!r})")
        inputs[kind] = value
    if normalize_embeddings is False:
        raise ValueError("bindkit always returns unit-length embeddings; normalize_embeddings=False is not offered")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    options = dict(options or {})
    bad = [k for k in options if k not in INPUT_KINDS]
    if bad:
        raise ValueError(f"options has unknown kind(s) {bad}; valid: {', '.join(INPUT_KINDS)}")

    jobs = []
    for kind in INPUT_KINDS:
        if inputs[kind] is None:
            continue
        if encoder_of(kind) not in model.modalities:
            raise ModalityError(
                f"this model has no {encoder_of(kind)!r} encoder for {kind} items (it has: "
                f"{', '.join(model.modalities)}); load it with modalities=[..., {kind!r}]"
            )
        jobs.append((kind, _as_list(inputs[kind], kind), resolve_params(kind, model, options.get(kind))))

    total = sum(len(items) for _, items, _ in jobs)
    workers = _default_workers(total) if num_workers is None else int(num_workers)
    out = Embeddings()
    show = False if show_progress_bar is None and not total else show_progress_bar  # no bar for nothing
    with progress_bar(show, total=total, desc="embedding", unit="item") as bar:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bindkit-load") if workers > 1 else None
        try:
            for kind, items, params in jobs:
                out[kind] = _embed_kind(model, kind, items, params, int(batch_size), strict, pool, out.errors, bar)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return out


def _embed_kind(model, kind, items, params, batch_size, strict, pool, errors, bar) -> np.ndarray:
    """Embed one kind batch by batch; batch b + 1 loads in the pool while the model runs on batch b."""
    n = len(items)
    result = np.full((n, int(model.dim)), np.nan, dtype=np.float32)

    def submit(start: int) -> list[Future | torch.Tensor | InputError]:
        idx = range(start, min(start + batch_size, n))
        if pool is None or kind == "text":  # tokenising is cheaper than a thread hop
            return [_safe_load(kind, items[i], i, params) for i in idx]
        # in the caller's context, so that its decode budget (bindkit.inputs.budget) bounds the loads too
        return [pool.submit(copy_context().run, _safe_load, kind, items[i], i, params) for i in idx]

    pending = submit(0) if n else []
    for start in range(0, n, batch_size):
        current, pending = pending, (submit(start + batch_size) if start + batch_size < n else [])
        rows, tensors = [], []
        for offset, fut in enumerate(current):
            res = fut.result() if isinstance(fut, Future) else fut
            if isinstance(res, InputError):
                if strict:
                    for f in pending:
                        if isinstance(f, Future):
                            f.cancel()
                    raise res
                errors.append(ItemError(kind, start + offset, str(res.item), res.reason))
            else:
                rows.append(start + offset)
                tensors.append(res)
        if tensors:
            with torch.inference_mode():
                vecs = model.encode(kind, torch.stack(tensors))
            result[rows] = vecs.detach().float().cpu().numpy()
        bar.update(len(current))
    return result
