"""``bindkit.train``: bind modalities through images by contrastive training on pair manifests.

The loop: every optimizer step takes one global batch from each manifest (one pair type per batch), embeds
both sides, gathers them across ranks, sums the symmetric InfoNCE losses, and takes an AdamW step (betas 0.9,
0.95; warm-up + cosine; gradient clipping). Every epoch ends with the held-out split's loss and R@1 both ways;
the best epoch and the last step are checkpointed. Data order and augmentation are functions of (seed, epoch,
row), so ``resume=True`` continues a killed run at its last checkpointed step exactly as if it had not stopped,
and N processes under ``torchrun`` see the same global batches as one process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..adapt.lora_model import refresh_base_link
from ..cards import load_card, model_dir
from ..errors import CardError, CheckpointError, ModalityError
from ..modality import ENCODERS, encoder_of
from . import checkpoint as ck
from . import lora_run as lora_mod
from .augment import DEFAULTS as AUGMENT_DEFAULTS
from .data import (BatchSampler, ItemCache, Manifest, ManifestError, PairDataset, encoders_of, epoch_batches,
                   media_digest, read_manifest, set_pairing, split, steps_per_epoch)
from .dist import Dist, setup
from .loop import (PairModule, embed_rows, empty_batch, fraction_or_steps, lr_lambda, make_loader, param_groups,
                   to_device, validate)
from .loss import gather, info_nce
from .schedule import auto_epochs, auto_patience

AUGMENT_MODES = ("trainable", "all", "none")
#: Arguments that must not change between a run and its --resume (they decide the data order and schedule).
_RESUME_KEYS = ("manifests", "card", "init", "weights", "freeze", "epochs", "batch_size", "lr", "weight_decay",
                "warmup", "grad_clip", "seed", "val_split", "augment", "max_steps", "max_bad_rows", "name", "lora",
                "pairing", "patience")


@dataclass
class TrainResult:
    """What :func:`train` returns: the output directory, the step reached, whether training finished (False
    after ``stop_after``), the per-epoch metrics and the best epoch."""

    out: Path
    step: int
    total_steps: int
    finished: bool
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _log_to_stderr(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)  # above a progress bar, not through it


def _freeze_list(freeze: Iterable[str] | str | None) -> list[str]:
    if not freeze:
        return []
    if isinstance(freeze, str):
        freeze = freeze.split(",")
    out = []
    for f in freeze:
        for part in str(f).split(","):
            if part.strip():
                enc = encoder_of(part.strip())
                if enc not in out:
                    out.append(enc)
    return [m for m in ENCODERS if m in out]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _build_model(manifests: Sequence[Manifest], card: Any, init: Any, weights: Any, seed: int, name: str,
                 log: Callable[[str], None]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(model with every encoder needed, full card dict to save, init description)."""
    import bindkit

    needed = encoders_of(manifests)
    init_model, init_info = None, {}
    if init is not None:
        init_model = bindkit.load_model(init, weights=weights)
        directory = model_dir(init)
        base = load_card(card if card is not None else init).to_dict()
        init_info = {"init": str(Path(init).resolve()) if directory else str(init),
                     "weights": str(weights) if weights else None,
                     "modalities": list(init_model.modalities),
                     "fingerprints": {m: init_model.fingerprint(m) for m in init_model.modalities}}
        for m in init_model.modalities:  # the weights decide the existing encoders' shapes
            base["modalities"][m] = dict(init_model.card.modalities[m])
        if base.get("out_embed_dim") != init_model.dim:
            raise CardError(f"--card {load_card(card).name!r} has a {base['out_embed_dim']}-d space but --init "
                            f"{init} is {init_model.dim}-d; new encoders must project into the init model's space")
        have = list(init_model.modalities)
    else:
        base_card = load_card(card if card is not None else "bindkit_small")
        base = base_card.to_dict()
        have = base_card.open_clip_modalities  # a card's open_clip encoders are its anchors: always in the model
    absent = [m for m in needed if m not in base["modalities"]]
    if absent:
        src = f"card {base['name']!r}" + (f" (of --init {init})" if init is not None and card is None else "")
        raise CardError(f"the manifests need a {absent[0]} encoder, but {src} has none (it has "
                        f"{', '.join(base['modalities'])}); pass --card with a card that has one")
    mods = [m for m in ENCODERS if m in have or m in needed]
    base["name"] = name
    torch.manual_seed(seed)
    build = base
    if init_model is not None and isinstance(base.get("open_clip"), dict):
        # the init model carries the open_clip towers' weights: do not read the card's pretrained tag again
        build = {**base, "open_clip": {**base["open_clip"], "pretrained": None}}
    model = bindkit.build_model(build, modalities=mods)
    if init_model is not None:
        for m in init_model.modalities:
            model.encoders[m].load_state_dict(init_model.encoders[m].state_dict(), strict=True)
        new = [m for m in mods if m not in init_model.modalities]
        if new:
            log(f"new encoder(s) {', '.join(new)} from card {load_card(card or init).name!r}, initialised at random "
                f"(seed {seed}); {', '.join(init_model.modalities)} from {init}")
    return model, base, init_info


def _check_input_shapes(model: Any, params: dict[str, dict], card: Any, init: Any) -> None:
    """CardError, before any file is decoded, when a card's ``preprocess`` section makes inputs its encoder
    cannot take (e.g. video frames of another size than the vision encoder's ``image_size``), instead of a shape
    error deep inside the first training step."""
    from ..inputs.batch import LOADERS
    from ..models.encoder import _check_batch, _expected_shape

    for kind in sorted(params):
        enc = encoder_of(kind)
        cfg = model.card.modalities[enc]
        shape = (1, *LOADERS[kind].shape(params[kind]))
        probe = torch.zeros(shape, dtype=torch.long) if kind == "text" else torch.empty(shape, device="meta")
        try:
            _check_batch(kind, probe, cfg)
        except ModalityError:
            src = (f"--card {card}" if card is not None else f"the card of --init {init}" if init is not None
                   else "card bindkit_small")
            raise CardError(
                f"{src}: its preprocess.{kind} section makes {kind} inputs of shape "
                f"{' x '.join(map(str, shape[1:]))}, but its {enc} encoder takes "
                f"{' x '.join(_expected_shape(kind, cfg)[1:])} (S: clips); make preprocess.{kind} agree with "
                f"modalities.{enc} (sizes, frames per clip, mel bins, lengths)") from None


def train(
    manifests: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    card: Any = None,
    init: Any = None,
    weights: str | os.PathLike | None = None,
    freeze: Iterable[str] | str | None = None,
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    warmup: float = 0.05,
    grad_clip: float = 1.0,
    seed: int = 0,
    val_split: float = 0.1,
    augment: str = "trainable",
    resume: bool = False,
    device: str | torch.device | None = None,
    workers: int = 0,
    max_steps: int | None = None,
    save_every: int | None = None,
    stop_after: int | None = None,
    max_bad_rows: float = 0.05,
    cache_mb: float = 2048,
    amp: bool | None = None,
    name: str | None = None,
    lora: Any = None,
    pairing: str = "auto",
    patience: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> TrainResult:
    """Train (or continue training) a model on pair manifests and write it to ``out``.

    Args:
        manifests: one or more pair manifests (CSV/JSONL/Parquet with two columns named by modality, e.g.
            ``image,text``; media paths relative to the manifest). Several train together: each step takes one
            batch of each (one pair type per batch) and sums their losses.
        out: output directory (see :mod:`bindkit.train.checkpoint` for its layout); loads with
            ``bindkit.load_model(out)``.
        card: card to train from scratch (default ``bindkit_small``); with ``init``, the card new encoders come
            from (default: the init model's own card).
        init: start from this model: a directory written by ``bindkit train``/``bindkit convert --card``, or a
            card name (with ``weights``). It keeps all its encoders; encoders the manifests need that it lacks are
            added from the card, initialised at random.
        freeze: modalities (``"image,text"``) kept bit-for-bit unchanged: no gradients, eval mode, not in the
            optimizer. Encoders no manifest uses are kept unchanged too.
        epochs: passes over the largest manifest. None (default): sized to the data
            (:func:`~bindkit.train.schedule.auto_epochs`: many passes over a few thousand pairs, 10 over 10k+), with
            early stopping (``patience``) on the held-out metric; the best epoch is published either way.
        batch_size, lr, weight_decay, grad_clip, seed: the usual; ``batch_size`` is global (split across
            ranks). AdamW with betas (0.9, 0.95).
        warmup: linear warm-up length, as a fraction of the total steps (< 1) or a step count (>= 1); cosine
            decay to 0 afterwards.
        val_split: fraction of each manifest's rows held out (seeded) and evaluated every epoch; 0 disables.
        augment: ``"trainable"`` (default: augment the sides whose encoder trains), ``"all"``, or ``"none"``.
            A frozen side without augmentation is embedded once and served from a cache.
        resume: continue the run in ``out`` from its last checkpoint (same arguments required).
        device: ``cpu``, ``cuda``, ``cuda:N``... (default: :func:`bindkit.auto_device`: ``$BINDKIT_DEVICE``, else
            ``cuda:LOCAL_RANK`` when available, else cpu).
        workers: DataLoader worker processes per rank (0: load in the training process).
        max_steps: stop after this many steps in total (the schedule spans them).
        save_every: also checkpoint every N steps (default: end of every epoch only).
        stop_after: checkpoint and return after this many steps of this call, unfinished (for time-limited
            jobs; continue with ``resume=True``).
        max_bad_rows: fraction of a manifest's rows that may be unusable (missing files, empty cells) and skipped;
            more is an error before training starts.
        cache_mb: memory for preprocessed items (each file is decoded once per run while it fits).
        amp: mixed precision (bf16, or fp16 with loss scaling); default on for CUDA, off on CPU.
        name: the model's card name (default: the output folder's name).
        lora: train LoRA adapters instead of the weights: ``"r=8,alpha=16,targets=qkv,out,fc1,fc2"`` (add
            ``head`` to the targets to train the adapted encoders' heads too), a dict, a
            :class:`~bindkit.adapt.LoRASpec`, or True for those defaults. Needs ``init`` (the base). Every encoder
            that trains (in a manifest, not frozen) gets an adapter; nothing else changes. ``out`` is then a LoRA
            model directory: one ``<encoder>.lora.safetensors`` per adapted encoder and a manifest pointing at the
            base (path and fingerprints); ``bindkit.load_model(out)`` loads both. ``init`` a LoRA directory
            continues its adapters (``lora`` may then be omitted).
        pairing: ``"auto"`` (default: label pairing for a manifest with a ``label`` column, else instance),
            ``"label"`` or ``"instance"``. Label pairing redraws each item's partner every epoch among the other
            side's items of the same label and counts same-label items in a batch as positives; validation then
            reports label-level R@1.
        patience: stop when the held-out score has not improved for this many epochs (the best epoch is
            published). None (default): automatic when ``epochs`` and ``max_steps`` are None
            (:func:`~bindkit.train.schedule.auto_patience`), off otherwise; 0: off.
        progress: progress bar (None: when stderr is a terminal).
        log: where messages go (default: stderr, rank 0 only).

    Returns:
        :class:`TrainResult`.

    Raises:
        ManifestError: bad manifests (before training starts). CardError: a card without a needed encoder.
        CheckpointError: ``resume`` without a checkpoint, or with other arguments.
    """
    ctx = setup(device)
    try:
        return _train(ctx, **{k: v for k, v in locals().items() if k != "ctx"})
    finally:
        ctx.close()


def _adapter_meta(record: dict[str, Any], which: str) -> dict[str, Any]:
    """The training record an adapter file carries (its ``meta``): what made it, without the per-epoch log."""
    keep = ("command", "arguments", "bindkit_version", "torch_version", "seed", "card", "init", "trainable",
            "frozen", "steps", "total_steps", "best", "device", "world_size", "lora")
    out = {k: record[k] for k in keep if k in record}
    if "lora" in out:  # the base is described by the adapter's own metadata and the directory's manifest
        out["lora"] = {k: v for k, v in out["lora"].items() if k != "base"}
    out["checkpoint"] = which
    out["data"] = [{k: d[k] for k in ("path", "sha256", "pair", "rows", "train", "val")} for d in record["data"]]
    if record.get("epochs"):
        out["last_epoch"] = record["epochs"][-1]
    return out


def _args_snapshot(**kw: Any) -> dict[str, Any]:
    def norm(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, os.PathLike):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, torch.device):
            return str(v)
        return str(v)

    return {k: norm(v) for k, v in kw.items()}


def _train(ctx: Dist, *, manifests, out, card, init, weights, freeze, epochs, batch_size, lr, weight_decay, warmup,
           grad_clip, seed, val_split, augment, resume, device, workers, max_steps, save_every, stop_after,
           max_bad_rows, cache_mb, amp, name, lora, pairing, patience, progress, log, command) -> TrainResult:
    import bindkit
    from ..progress import progress_bar

    started = time.time()
    say = (log or _log_to_stderr) if ctx.main else (lambda msg: None)
    if isinstance(manifests, (str, os.PathLike)):
        manifests = [manifests]
    if not manifests:
        raise ManifestError("no manifest given; pass one or more pair manifests (e.g. image_text.csv)")
    if augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {', '.join(AUGMENT_MODES)}, got {augment!r}")
    for label, v, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("patience", patience, 0)):
        if v is not None and int(v) < lo:
            raise ValueError(f"{label} must be at least {lo}, got {v!r}")
    if not 0 <= val_split < 1:
        raise ValueError(f"val_split must be in [0, 1), got {val_split!r}")
    if batch_size % ctx.world:
        raise ValueError(f"the global batch size {batch_size} is not divisible by the {ctx.world} processes")
    out = Path(out).expanduser().resolve()
    name = name or out.name
    freeze_list = _freeze_list(freeze)
    lora_run = None
    lora_on = lora_mod.wanted(lora, init)
    if lora_on:
        lora = lora_mod.normalise(lora, init)  # the spec as text; None: continue the --init LoRA directory's
    args = _args_snapshot(manifests=[str(Path(m).expanduser().resolve()) for m in manifests],
                          card=card if card is None or isinstance(card, (str, os.PathLike)) else load_card(card).name,
                          init=str(Path(init).resolve()) if init is not None and model_dir(init) else init,
                          weights=weights, freeze=freeze_list, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip, seed=seed,
                          val_split=val_split, augment=augment, max_steps=max_steps, max_bad_rows=max_bad_rows,
                          name=name, save_every=save_every, workers=workers, amp=amp, lora=lora, pairing=pairing,
                          patience=patience)

    # --- resume or fresh start ----------------------------------------------------------------------------
    state: dict[str, Any] | None = None
    if resume:
        last = ck.checkpoint_dir(out, "last")
        if last is None:
            raise CheckpointError(f"--resume: {out} has no checkpoint to continue from (no {ck.CKPT_DIR}/last); "
                                  "start the run without --resume")
        state = ck.load_trainer_state(last)
        changed = [k for k in _RESUME_KEYS if state["args"].get(k) != args.get(k)]
        if changed:
            diffs = "; ".join(f"{k}: {state['args'].get(k)!r} then, {args.get(k)!r} now" for k in changed)
            raise CheckpointError(f"--resume needs the arguments of the run in {out}; changed: {diffs}")
    elif ctx.main and out.exists() and any(out.iterdir()):
        raise CheckpointError(f"output directory {out} is not empty; continue that run with --resume, or choose "
                              "another --out")
    ctx.barrier()

    # --- data ----------------------------------------------------------------------------------------------
    mans = [read_manifest(p, max_bad_fraction=max_bad_rows) for p in manifests]
    for m in mans:
        split(m, val_split, seed)
        set_pairing(m, pairing)
        if m.pairing == "label":
            say(f"{m.name}: label pairing over {len(m.label_names)} label(s): partners redrawn every epoch among "
                "same-label items, same-label items in a batch are positives (--pairing instance: as written)")
        if m.bad:
            say(f"{m.name}: skipping {len(m.bad)} unusable row(s) of {len(m.rows) + len(m.bad)} "
                f"(first: row {m.bad[0][0]}: {m.bad[0][1]})")
        if m.ignored_columns:
            say(f"{m.name}: ignoring column(s) {', '.join(m.ignored_columns)}")
    if state is not None:
        shas = [m.sha256 for m in mans]
        if state["data_sha256"] != shas:
            raise CheckpointError(f"--resume: the manifests changed since the run in {out} started (sha256 differs);"
                                  " the data order would not match — start a new run")
    media = [media_digest(m) if ctx.main else {} for m in mans]
    n_train = [len(m.train_idx) for m in mans]
    spe = steps_per_epoch(n_train, batch_size)
    auto = epochs is None and max_steps is None
    if epochs is None:
        epochs = auto_epochs(max(n_train), batch_size)
    total = epochs * spe if max_steps is None else int(max_steps)
    n_epochs = math.ceil(total / spe)
    warm = fraction_or_steps(warmup, total)
    planned = total
    if patience is None:
        patience = auto_patience(n_epochs) if auto else 0
    if val_split <= 0:
        patience = 0

    # --- model ---------------------------------------------------------------------------------------------
    needed = encoders_of(mans)
    if lora_on:
        model, full_card, init_info, lora_run = lora_mod.build(needed, card, init, weights, lora, name, say)
    else:
        model, full_card, init_info = _build_model(mans, card, init, weights, seed, name, say)
    unknown = [f for f in freeze_list if f not in model.modalities]
    if unknown:
        raise ModalityError(f"--freeze {unknown[0]}: the model has no {unknown[0]} encoder (it has "
                                  f"{', '.join(model.modalities)})")
    unused = [m for m in model.modalities if m not in needed and m not in freeze_list]
    frozen = [m for m in model.modalities if m in freeze_list or m in unused]
    trainable = [m for m in model.modalities if m not in frozen]
    if unused:
        say(f"{', '.join(unused)}: in no manifest; kept unchanged")
    for m in mans:
        if encoder_of(m.a) in frozen and encoder_of(m.b) in frozen:
            raise ManifestError(f"{m.name}: both sides are frozen ({m.a}, {m.b}); nothing in this pair would train")
    if lora_run is not None:
        lora_mod.setup(model, lora_run, trainable, seed, say)
        if state is not None:
            lora_mod.load_values(model, ck.checkpoint_dir(out, "last"))
    elif state is not None:
        model.encoders.load_state_dict(ck.load_model_state(ck.checkpoint_dir(out, "last")), strict=True)
    dev = ctx.device
    model.to(dev)
    for m in frozen:
        model.encoders[m].requires_grad_(False)

    def set_train_mode() -> None:
        model.eval()
        for m in trainable:
            model.encoders[m].train()

    set_train_mode()
    use_amp = (dev.type == "cuda") if amp is None else bool(amp and dev.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    # --- per-manifest loading and caches -----------------------------------------------------------------
    from ..inputs.batch import resolve_params

    params = {k: resolve_params(k, model) for k in {m.a for m in mans} | {m.b for m in mans}}
    _check_input_shapes(model, params, card, init)
    text_params = params.get("text")
    aug_of: dict[str, Any] = {}
    caches: list[dict[str, torch.Tensor]] = []
    datasets: list[PairDataset] = []
    cache_failed: list[dict[int, str]] = [{} for _ in mans]
    eval_bs = max(batch_size, 64)
    budget = int(cache_mb * 2**20 / max(1, len(mans)))
    model.eval()
    for i, m in enumerate(mans):
        aug: dict[str, Any] = {}
        cache: dict[str, torch.Tensor] = {}
        for side, kind in (("a", m.a), ("b", m.b)):
            enc = encoder_of(kind)
            on = augment == "all" or (augment == "trainable" and enc in trainable)
            aug[kind] = AUGMENT_DEFAULTS.get(kind) if on else None
            if enc in frozen and aug[kind] is None:
                t0 = time.time()
                rows = list(range(len(m.rows)))
                once = PairDataset(m, params, {}, set(), seed, ItemCache(0))
                emb, failed = embed_rows(model, once, rows, eval_bs, workers, dev, sides=(side,), autocast=autocast)
                cache[side] = emb[side]
                cache_failed[i].update(failed)
                say(f"{m.name}: {kind} side frozen and not augmented: its {len(rows)} embeddings are computed once "
                    f"and cached ({time.time() - t0:.1f}s; {len(failed)} failed to load)")
        caches.append(cache)
        aug_of[m.pair] = {k: v is not None for k, v in aug.items()}
        # label pairing redraws a frozen side when there is one (each trainable item is seen once an epoch)
        redraw = "a" if encoder_of(m.a) in frozen and encoder_of(m.b) not in frozen else "b"
        datasets.append(PairDataset(m, params, aug, set(cache), seed, ItemCache(budget), redraw=redraw))
    set_train_mode()

    # --- optimizer, schedule -------------------------------------------------------------------------------
    train_encoders = [model.encoders[m] for m in trainable]
    optimizer = torch.optim.AdamW(param_groups(train_encoders, weight_decay), lr=lr, betas=(0.9, 0.95),
                                  eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, warm, total))
    trainable_params = [p for e in train_encoders for p in e.parameters() if p.requires_grad]
    module = PairModule(model.encoders)
    if ctx.distributed:
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)

    step = 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    skipped: dict[str, dict[int, str]] = {m.pair + f"#{i}": {} for i, m in enumerate(mans)}
    epoch_acc = {"loss": 0.0, "n": 0}
    if state is not None:
        step = int(state["step"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best = list(state["history"]), state["best"]
        skipped = {k: {int(r): why for r, why in v.items()} for k, v in state["skipped"].items()}
        epoch_acc = dict(state["epoch_acc"])
        rngs = state["rng"]
        _set_rng_state(rngs[ctx.rank] if ctx.rank < len(rngs) else rngs[0])
        say(f"resuming {out} at step {step} of {total}")
    else:
        torch.manual_seed(seed + 1000 * ctx.rank)  # drop-path / dropout streams differ per rank

    keys = [m.pair if sum(x.pair == m.pair for x in mans) == 1 else f"{m.pair}#{i}" for i, m in enumerate(mans)]
    metrics = ck.CsvLog(out / ck.METRICS_FILE, ["step", "epoch", "loss"] + [f"loss_{k}" for k in keys]
                        + ["lr", "items_per_s", "elapsed_s", "skipped"])
    val_log = ck.CsvLog(out / ck.VAL_FILE, ["step", "epoch", "pair", "n", "loss", "r1_ab", "r1_ba", "chance_ab",
                                            "chance_ba", "failed"])
    tb = None
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        metrics.truncate_after(step)
        val_log.truncate_after(step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tensorboard"), purge_step=step or None)
        except Exception:  # TensorBoard not installed: the CSV files carry the same numbers
            tb = None
    ctx.barrier()

    say(f"training {', '.join(trainable)} (frozen: {', '.join(frozen) or 'none'}) on "
        + ", ".join(f"{m.name}: {len(m.train_idx)} train / {len(m.val_idx)} val" for m in mans)
        + f"; {total} steps ({n_epochs} epoch(s) of {spe}), global batch {batch_size}"
        + (f" over {ctx.world} processes" if ctx.distributed else "") + f", device {dev}"
        + (f", amp {str(amp_dtype).removeprefix('torch.')}" if use_amp else ""))

    def record(status: str) -> dict[str, Any]:
        return {
            "format": "bindkit-train-record", "format_version": 1, "status": status,
            "bindkit_version": bindkit.__version__, "torch_version": torch.__version__,
            "command": command, "arguments": args, "seed": seed, "card": full_card["name"],
            "base_card": (load_card(card).name if card is not None else (None if init else "bindkit_small")),
            **({"init": init_info} if init_info else {}),
            "data": [{"path": str(m.path), "sha256": m.sha256, "media": media[i], "pair": m.pair, "rows": len(m.rows) + len(m.bad),
                      "skipped_at_validation": len(m.bad), "train": len(m.train_idx), "val": len(m.val_idx),
                      "skipped_at_load": len(skipped[f"{m.pair}#{i}"]),
                      "skipped_examples": [f"row {r}: {why}" for r, why in list(skipped[f'{m.pair}#{i}'].items())[:5]],
                      "augmented": aug_of[m.pair], "cached_sides": [m.a if s == "a" else m.b for s in caches[i]]}
                     for i, m in enumerate(mans)],
            "modalities": list(model.modalities), "trainable": trainable, "frozen": frozen,
            "steps": step, "total_steps": total, "steps_per_epoch": spe, "world_size": ctx.world,
            "device": str(dev), "amp": str(amp_dtype).removeprefix("torch.") if use_amp else None,
            "epochs": history, "best": best, "pairing": {m.name: m.pairing for m in mans},
            **({"stopped_early": {"step": stopped_early, "planned_steps": planned, "patience": patience}}
               if stopped_early else {}),
            **({"lora": lora_run.summary()} if lora_run is not None else {}),
            "wall_s": round(time.time() - started, 1),
        }

    def save(which: str) -> None:
        rngs = ctx.gather_objects(_rng_state())
        if ctx.main:
            sd = {k: v for k, v in model.encoders.state_dict().items()} if lora_run is None else None
            ts = None
            if which == "last":
                ts = {"step": step, "args": args, "data_sha256": [m.sha256 for m in mans],
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "scaler": scaler.state_dict() if scaler is not None else None, "rng": rngs,
                      "history": history, "best": best, "epoch_acc": epoch_acc, "world_size": ctx.world,
                      "skipped": {k: {str(r): why for r, why in v.items()} for k, v in skipped.items()}}
            write = None
            if lora_run is not None:  # a LoRA directory (adapters + base pointer) instead of full weights
                write = partial(lora_mod.write, model=model, run=lora_run, card=full_card,
                                meta=_adapter_meta(record("running"), which), home=out / ck.CKPT_DIR / which)
            ck.save_checkpoint(out, which, sd, full_card, ts, write=write)
            ck.write_record(out, record("running"))
        ctx.barrier()

    def evaluate(epoch: int) -> dict[str, Any]:
        res: dict[str, Any] = {}
        if ctx.main and val_split > 0:
            model.eval()
            for i, m in enumerate(mans):
                r = validate(model, datasets[i], eval_bs, workers, dev, caches[i], autocast=autocast)
                if r is not None:
                    res[keys[i]] = r
                    val_log.append({"step": step, "epoch": epoch, "pair": keys[i], **r})
                    if tb is not None and "loss" in r:
                        for k in ("loss", "r1_ab", "r1_ba"):
                            tb.add_scalar(f"val/{keys[i]}/{k}", r[k], step)
            set_train_mode()
        return ctx.broadcast_object(res)

    # --- the loop ------------------------------------------------------------------------------------------
    bar = progress_bar(progress if ctx.main else False, total=total, initial=step, desc="train", unit="step")
    done_here, finished = 0, step >= total
    stopped_early: int | None = None
    rate_pairs, rate_t = 0, time.time()
    while step < total and not (stop_after is not None and done_here >= stop_after):
        epoch, offset = divmod(step, spe)
        iters = []
        for i, m in enumerate(mans):
            batches = epoch_batches(len(m.train_idx), batch_size, spe, seed, epoch, i)
            sampler = BatchSampler(batches, m.train_idx, epoch, ctx.rank, ctx.world, start=offset)
            iters.append(iter(make_loader(datasets[i], sampler, text_params, workers, seed * 1009 + epoch)))
        for _ in range(offset, spe):
            if step >= total or (stop_after is not None and done_here >= stop_after):
                break
            loaded = [next(it) for it in iters]
            jobs = []
            for i, (m, b) in enumerate(zip(mans, loaded)):
                for row, why in b.failed:
                    if row not in skipped[f"{m.pair}#{i}"]:
                        skipped[f"{m.pair}#{i}"][row] = why
                        if len(skipped[f"{m.pair}#{i}"]) <= 3:
                            say(f"{m.name}: skipping row {row}: {why}")
                sides = []
                for side, kind in (("a", m.a), ("b", m.b)):
                    x = getattr(b, side)
                    if side in caches[i]:
                        sides.append(None)
                    else:
                        sides.append(to_device(x if len(b.rows) else empty_batch(kind, params[kind]), dev))
                jobs.append((m.a, sides[0], m.b, sides[1]))
            with autocast():
                outs = module(jobs)
            losses: list[torch.Tensor | None] = []
            anchors: list[torch.Tensor] = []
            n_pairs = 0
            for i, ((za, zb, scale), b) in enumerate(zip(outs, loaded)):
                rows = b.rows.to(dev)
                redrawn = b.partners.to(dev) if b.partners is not None else rows
                if "a" in caches[i]:
                    za = caches[i]["a"][redrawn if datasets[i].redraw == "a" else rows]
                if "b" in caches[i]:
                    zb = caches[i]["b"][redrawn if datasets[i].redraw == "b" else rows]
                labels = (torch.as_tensor(mans[i].labels, device=dev)[rows].float()[:, None]
                          if mans[i].pairing == "label" else None)
                ok = ~(torch.isnan(za).any(1) | torch.isnan(zb).any(1))  # frozen items that failed to load
                if not bool(ok.all()):
                    for row in b.rows[~ok.cpu()].tolist():
                        skipped[f"{mans[i].pair}#{i}"].setdefault(row, cache_failed[i].get(row, "failed to load"))
                    za, zb = za[ok], zb[ok]
                    labels = labels[ok] if labels is not None else None
                # every output enters the loss (times 0 when a batch is unusable): DDP reduces the same
                # parameters on every rank and step
                anchor = torch.zeros((), device=dev)
                for z in (za, zb, scale):
                    if z is not None and z.requires_grad:
                        anchor = anchor + 0.0 * z.float().sum()
                za, zb = gather(za.float()), gather(zb.float())
                if labels is not None:
                    labels = gather(labels)[:, 0]
                n_pairs += za.shape[0]
                usable = za.shape[0] >= 2
                losses.append(info_nce(za, zb, scale.float(), labels) + anchor if usable else None)
                anchors.append(anchor)
            terms = [x for x in losses if x is not None]
            lr_now = scheduler.get_last_lr()[0]
            loss = torch.stack(terms + [a for a, x in zip(anchors, losses) if x is None]).sum()
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:  # always, unless every side is cached (refused earlier)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if terms:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if grad_clip and grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable_params, grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                loss_v = float(loss.detach())
            else:
                say(f"step {step + 1}: fewer than 2 loadable pairs in every batch; no update")
                loss_v = float("nan")
            scheduler.step()
            step += 1
            done_here += 1
            if not math.isnan(loss_v):
                epoch_acc["loss"] += loss_v
                epoch_acc["n"] += 1
            rate_pairs += n_pairs
            now = time.time()
            ips = rate_pairs / max(now - rate_t, 1e-9)
            if now - rate_t > 30:
                rate_pairs, rate_t = 0, now
            if ctx.main:
                row = {"step": step, "epoch": epoch, "loss": loss_v, "lr": lr_now, "items_per_s": ips,
                       "elapsed_s": round(now - started, 3),
                       "skipped": sum(len(v) for v in skipped.values())}
                for k, x in zip(keys, losses):
                    row[f"loss_{k}"] = float(x.detach()) if x is not None else float("nan")
                metrics.append(row)
                if tb is not None:
                    tb.add_scalar("train/loss", loss_v, step)
                    tb.add_scalar("train/lr", lr_now, step)
                bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{lr_now:.2e}", items_s=f"{ips:.1f}", refresh=False)
                bar.update(1)
            end_of_epoch = step % spe == 0 or step == total
            if end_of_epoch:
                val = evaluate(epoch)
                entry = {"epoch": epoch, "step": step, "train_loss": epoch_acc["loss"] / max(1, epoch_acc["n"]),
                         "lr": lr_now, "val": val}
                scores = [0.5 * (v["r1_ab"] + v["r1_ba"]) for v in val.values() if "r1_ab" in v]
                if scores:
                    entry["val_score"] = float(np.mean(scores))
                history.append(entry)
                epoch_acc = {"loss": 0.0, "n": 0}
                msg = "; ".join(f"{k} R@1 {v['r1_ab']:.3f}/{v['r1_ba']:.3f} (chance {v['chance_ab']:.3f})"
                                for k, v in val.items() if "r1_ab" in v)
                say(f"epoch {epoch + 1}/{n_epochs}: train loss {entry['train_loss']:.4f}"
                    + (f"; val {msg}" if msg else ""))
                if scores and (best is None or entry["val_score"] > best["val_score"]):
                    best = {"epoch": epoch, "step": step, "val_score": entry["val_score"]}
                    save("best")
                if patience and best is not None and epoch - best["epoch"] >= patience and step < total:
                    say(f"early stop: no better held-out score for {patience} epochs (best: epoch "
                        f"{best['epoch'] + 1}, {best['val_score']:.3f}); publishing the best epoch")
                    stopped_early = step
                    total = step
            if end_of_epoch or (save_every and step % save_every == 0) or \
                    (stop_after is not None and done_here >= stop_after):
                save("last")
    bar.close()
    finished = step >= total
    if ctx.main:
        if finished:
            ck.refuse_untrained(out, skipped)  # every item failed to load: publish nothing
            src = ck.checkpoint_dir(out, "best") if best is not None else None
            ck.publish(out, src or ck.checkpoint_dir(out, "last"))
            if lora_run is not None:
                refresh_base_link(out)
        rec = record("finished" if finished else "paused")
        if finished and best is not None:
            rec["published"] = f"best (epoch {best['epoch'] + 1}, step {best['step']})"
        elif finished:
            rec["published"] = "last"
        if finished:
            manifest = json.loads((out / "manifest.json").read_text())
            rec["fingerprints"] = {m: info.get("fingerprint") for m, info in manifest["files"].items()}
        ck.write_record(out, rec)
        if tb is not None:
            tb.close()
    else:
        rec = {}
    ctx.barrier()
    if ctx.main:
        say(f"{'finished' if finished else 'paused'} at step {step}/{total}: {out}"
            + ("" if finished else " (continue with --resume)"))
    return TrainResult(out=out, step=step, total_steps=total, finished=finished, epochs=history, best=best,
                       record=rec)


