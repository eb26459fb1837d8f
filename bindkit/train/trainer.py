"""``bindkit.train``: bind modalities through images by contrastive training on pair manifests.

The loop: every optimizer step takes one global batch from each manifest (one pair type per batch), embeds
both sides, gathers them across ranks, sums the symmetric InfoNCE losses, and takes an AdamW step (betas 0.9,
0.95; warm-up + cosine; gradient clipping). Every epoch ends with the held-out split's loss and R@1 both ways;
the best epoch and the last step are checkpointed. Data order and augmentation are functions of (seed, epoch,
row), so ``resume=True`` continues a killed run at its last checkpointed step exactly as if it had not stopped,
and N processes under ``torchrun`` see the same global batches as one process.

The parts: the run shell shared with ``bindkit distill`` (:mod:`.run`), the step (:mod:`.step`), encoding and
validation (:mod:`.encode`), the optimiser's groups and schedule (:mod:`.optim`), the options
(:mod:`.options`); this module builds the model and the data pipeline and drives the epochs (:class:`_Training`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TYPE_CHECKING

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
from .encode import PairModule, embed_rows, make_loader, validate
from .optim import fraction_or_steps, param_groups
from .options import AUGMENT_MODES, TrainOptions  # noqa: F401  (AUGMENT_MODES: moved)
from .run import (RunState, Throughput, args_snapshot, build_adamw, build_scheduler, fingerprints, log_to_stderr,
                  refuse_changed_args, refuse_non_empty, restore_optimiser, rng_state, run_record, say_done,
                  set_rng_state)
from .run import publish as run_publish
from .run import save as run_save
from .schedule import auto_epochs, auto_patience
from .step import StepOutcome, StepParts, contrastive_step, skip_key

if TYPE_CHECKING:
    from bindkit.models.encoder import BindModel

#: Arguments that must not change between a run and its --resume (they decide the data order and schedule).
_RESUME_KEYS = ("manifests", "card", "init", "weights", "freeze", "epochs", "batch_size", "lr", "weight_decay",
                "warmup", "grad_clip", "seed", "val_split", "augment", "max_steps", "max_bad_rows", "name", "lora",
                "pairing", "patience")
# the run shell's helpers under their old private names (moved to .run)
_log_to_stderr, _rng_state, _set_rng_state, _args_snapshot = log_to_stderr, rng_state, set_rng_state, args_snapshot


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
    from .run import seed_all

    seed_all(seed)


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


def _check_input_shapes(model: "BindModel", params: dict[str, dict], card: Any, init: Any) -> None:
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
        ArgumentError (a ValueError): a bad argument (augment, epochs, batch size, val_split...).
        CheckpointError: ``resume`` without a checkpoint, or with other arguments.
    """
    return train_with(TrainOptions(
        manifests=manifests, out=out, card=card, init=init, weights=weights, freeze=freeze, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip, seed=seed,
        val_split=val_split, augment=augment, resume=resume, device=device, workers=workers, max_steps=max_steps,
        save_every=save_every, stop_after=stop_after, max_bad_rows=max_bad_rows, cache_mb=cache_mb, amp=amp,
        name=name, lora=lora, pairing=pairing, patience=patience, progress=progress, log=log, command=command))


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


def train_with(options: TrainOptions) -> TrainResult:
    """:func:`train` with its arguments as :class:`~bindkit.train.options.TrainOptions` (what the CLI builds)."""
    ctx = setup(options.device)
    try:
        return _Training(ctx, options).run()
    finally:
        ctx.close()


@dataclass
class _Schedule:
    """The run's length, decided by the data: steps per epoch, total steps (``planned`` before an early stop),
    epochs, warm-up steps and the early-stopping patience (0: off)."""

    spe: int
    total: int
    n_epochs: int
    warm: int
    patience: int

    @classmethod
    def of(cls, o: TrainOptions, n_train: list[int]) -> "_Schedule":
        spe = steps_per_epoch(n_train, o.batch_size)
        auto = o.epochs is None and o.max_steps is None
        epochs = auto_epochs(max(n_train), o.batch_size) if o.epochs is None else o.epochs
        total = epochs * spe if o.max_steps is None else int(o.max_steps)
        n_epochs = math.ceil(total / spe)
        patience = o.patience
        if patience is None:
            patience = auto_patience(n_epochs) if auto else 0
        if o.val_split <= 0:
            patience = 0
        return cls(spe=spe, total=total, n_epochs=n_epochs, warm=fraction_or_steps(o.warmup, total),
                   patience=patience)


class _Training:
    """One call of :func:`train`: the setup phases (:meth:`_arguments` ... :meth:`_logs`) fill in the attributes
    in order, :meth:`run` runs the epochs (:meth:`_epoch`) and publishes (:meth:`_finish`)."""

    def __init__(self, ctx: Dist, options: TrainOptions) -> None:
        self.ctx, self.o = ctx, options
        self.started = time.time()
        self.say = (options.log or log_to_stderr) if ctx.main else (lambda msg: None)
        self.lora_run: Any = None
        self.stopped_early: int | None = None

    def run(self) -> TrainResult:
        self._arguments()
        state = self._resume_state()
        self._data(state)
        self._model(state)
        self._pipeline()
        self._optimiser(state)
        self._logs()
        self._train_epochs()
        return self._finish()

    # --- setup ------------------------------------------------------------------------------------------------
    def _arguments(self) -> None:
        o = self.o
        manifests = o.manifests
        if isinstance(manifests, (str, os.PathLike)):
            manifests = [manifests]
        if not manifests:
            raise ManifestError("no manifest given; pass one or more pair manifests (e.g. image_text.csv)")
        self.manifests = list(manifests)
        o.check(self.ctx.world)
        self.out = Path(o.out).expanduser().resolve()
        self.name = o.name or self.out.name
        self.freeze_list = _freeze_list(o.freeze)
        self.lora_on = lora_mod.wanted(o.lora, o.init)
        self.lora = lora_mod.normalise(o.lora, o.init) if self.lora_on else o.lora  # None: the --init LoRA's spec
        card, init = o.card, o.init
        self.args = args_snapshot(
            manifests=[str(Path(m).expanduser().resolve()) for m in self.manifests],
            card=card if card is None or isinstance(card, (str, os.PathLike)) else load_card(card).name,
            init=str(Path(init).resolve()) if init is not None and model_dir(init) else init,
            weights=o.weights, freeze=self.freeze_list, epochs=o.epochs, batch_size=o.batch_size, lr=o.lr,
            weight_decay=o.weight_decay, warmup=o.warmup, grad_clip=o.grad_clip, seed=o.seed,
            val_split=o.val_split, augment=o.augment, max_steps=o.max_steps, max_bad_rows=o.max_bad_rows,
            name=self.name, save_every=o.save_every, workers=o.workers, amp=o.amp, lora=self.lora,
            pairing=o.pairing, patience=o.patience)

    def _resume_state(self) -> dict[str, Any] | None:
        out, state = self.out, None
        if self.o.resume:
            last = ck.checkpoint_dir(out, "last")
            if last is None:
                raise CheckpointError(f"--resume: {out} has no checkpoint to continue from (no {ck.CKPT_DIR}/last); "
                                      "start the run without --resume")
            state = ck.load_trainer_state(last)
            refuse_changed_args(state["args"], self.args, _RESUME_KEYS, out)
        elif self.ctx.main:
            refuse_non_empty(out)
        self.ctx.barrier()
        return state

    def _data(self, state: dict[str, Any] | None) -> None:
        o, say = self.o, self.say
        mans = [read_manifest(p, max_bad_fraction=o.max_bad_rows) for p in self.manifests]
        for m in mans:
            split(m, o.val_split, o.seed)
            set_pairing(m, o.pairing)
            if m.pairing == "label":
                say(f"{m.name}: label pairing over {len(m.label_names)} label(s): partners redrawn every epoch among "
                    "same-label items, same-label items in a batch are positives (--pairing instance: as written)")
            if m.bad:
                say(f"{m.name}: skipping {len(m.bad)} unusable row(s) of {len(m.rows) + len(m.bad)} "
                    f"(first: row {m.bad[0][0]}: {m.bad[0][1]})")
            if m.ignored_columns:
                say(f"{m.name}: ignoring column(s) {', '.join(m.ignored_columns)}")
        if state is not None and state["data_sha256"] != [m.sha256 for m in mans]:
            raise CheckpointError(f"--resume: the manifests changed since the run in {self.out} started (sha256 "
                                  "differs); the data order would not match — start a new run")
        self.mans = mans
        self.media = [media_digest(m) if self.ctx.main else {} for m in mans]
        self.sched = _Schedule.of(o, [len(m.train_idx) for m in mans])
        self.planned = self.sched.total

    def _model(self, state: dict[str, Any] | None) -> None:
        o, say, mans = self.o, self.say, self.mans
        needed = encoders_of(mans)
        if self.lora_on:
            model, full_card, init_info, self.lora_run = lora_mod.build(needed, o.card, o.init, o.weights, self.lora,
                                                                        self.name, say)
        else:
            model, full_card, init_info = _build_model(mans, o.card, o.init, o.weights, o.seed, self.name, say)
        unknown = [f for f in self.freeze_list if f not in model.modalities]
        if unknown:
            raise ModalityError(f"--freeze {unknown[0]}: the model has no {unknown[0]} encoder (it has "
                                f"{', '.join(model.modalities)})")
        unused = [m for m in model.modalities if m not in needed and m not in self.freeze_list]
        frozen = [m for m in model.modalities if m in self.freeze_list or m in unused]
        trainable = [m for m in model.modalities if m not in frozen]
        if unused:
            say(f"{', '.join(unused)}: in no manifest; kept unchanged")
        for m in mans:
            if encoder_of(m.a) in frozen and encoder_of(m.b) in frozen:
                raise ManifestError(f"{m.name}: both sides are frozen ({m.a}, {m.b}); nothing in this pair would "
                                    "train")
        if self.lora_run is not None:
            lora_mod.setup(model, self.lora_run, trainable, o.seed, say)
            if state is not None:
                lora_mod.load_values(model, ck.checkpoint_dir(self.out, "last"))
        elif state is not None:
            model.encoders.load_state_dict(ck.load_model_state(ck.checkpoint_dir(self.out, "last")), strict=True)
        self.dev = dev = self.ctx.device
        model.to(dev)
        for m in frozen:
            model.encoders[m].requires_grad_(False)
        self.model, self.full_card, self.init_info = model, full_card, init_info
        self.frozen, self.trainable = frozen, trainable
        self.set_train_mode()
        self.use_amp = (dev.type == "cuda") if o.amp is None else bool(o.amp and dev.type == "cuda")
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp and self.amp_dtype == torch.float16 else None

    def set_train_mode(self) -> None:
        """Trainable encoders in train mode, frozen ones in eval mode."""
        self.model.eval()
        for m in self.trainable:
            self.model.encoders[m].train()

    def autocast(self) -> Any:
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else contextlib.nullcontext()

    def _pipeline(self) -> None:
        """Per-manifest loading: loader parameters, augmentation, the frozen sides' caches, the datasets."""
        from ..inputs.batch import resolve_params

        o, model, mans = self.o, self.model, self.mans
        self.params = params = {k: resolve_params(k, model) for k in {m.a for m in mans} | {m.b for m in mans}}
        _check_input_shapes(model, params, o.card, o.init)
        self.aug_of: dict[str, Any] = {}
        self.caches: list[dict[str, torch.Tensor]] = []
        self.datasets: list[PairDataset] = []
        self.cache_failed: list[dict[int, str]] = [{} for _ in mans]
        self.eval_bs = max(o.batch_size, 64)
        budget = int(o.cache_mb * 2**20 / max(1, len(mans)))
        model.eval()
        for i, m in enumerate(mans):
            aug: dict[str, Any] = {}
            cache: dict[str, torch.Tensor] = {}
            for side, kind in (("a", m.a), ("b", m.b)):
                on = o.augment == "all" or (o.augment == "trainable" and encoder_of(kind) in self.trainable)
                aug[kind] = AUGMENT_DEFAULTS.get(kind) if on else None
                if encoder_of(kind) in self.frozen and aug[kind] is None:
                    cache[side] = self._cache_side(i, m, side, kind)
            self.caches.append(cache)
            self.aug_of[m.pair] = {k: v is not None for k, v in aug.items()}
            # label pairing redraws a frozen side when there is one (each trainable item is seen once an epoch)
            redraw = "a" if encoder_of(m.a) in self.frozen and encoder_of(m.b) not in self.frozen else "b"
            self.datasets.append(PairDataset(m, params, aug, set(cache), o.seed, ItemCache(budget), redraw=redraw))
        self.set_train_mode()

    def _cache_side(self, i: int, m: Manifest, side: str, kind: str) -> torch.Tensor:
        """The embeddings of a frozen, non-augmented side, computed once."""
        t0 = time.time()
        rows = list(range(len(m.rows)))
        once = PairDataset(m, self.params, {}, set(), self.o.seed, ItemCache(0))
        emb, failed = embed_rows(self.model, once, rows, self.eval_bs, self.o.workers, self.dev, sides=(side,),
                                 autocast=self.autocast)
        self.cache_failed[i].update(failed)
        self.say(f"{m.name}: {kind} side frozen and not augmented: its {len(rows)} embeddings are computed once "
                 f"and cached ({time.time() - t0:.1f}s; {len(failed)} failed to load)")
        return emb[side]

    def _optimiser(self, state: dict[str, Any] | None) -> None:
        o, ctx, dev, mans = self.o, self.ctx, self.dev, self.mans
        train_encoders = [self.model.encoders[m] for m in self.trainable]
        optimizer = build_adamw(param_groups(train_encoders, o.weight_decay), o.lr)
        scheduler = build_scheduler(optimizer, self.sched.warm, self.sched.total)
        module: torch.nn.Module = PairModule(self.model.encoders)
        if ctx.distributed:
            module = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)
        self.run_state = rs = RunState(total=self.sched.total, spe=self.sched.spe, stop_after=o.stop_after)
        self.skipped: dict[str, dict[int, str]] = {skip_key(m, i): {} for i, m in enumerate(mans)}
        self.epoch_acc = {"loss": 0.0, "n": 0}
        if state is not None:
            rs.step = int(state["step"])
            restore_optimiser(state, optimizer, scheduler, self.scaler)
            rs.history, rs.best = list(state["history"]), state["best"]
            self.skipped = {k: {int(r): why for r, why in v.items()} for k, v in state["skipped"].items()}
            self.epoch_acc = dict(state["epoch_acc"])
            rngs = state["rng"]
            set_rng_state(rngs[ctx.rank] if ctx.rank < len(rngs) else rngs[0])
            self.say(f"resuming {self.out} at step {rs.step} of {rs.total}")
        else:
            torch.manual_seed(o.seed + 1000 * ctx.rank)  # drop-path / dropout streams differ per rank
        labels = [torch.as_tensor(m.labels, device=dev) if m.pairing == "label" else None for m in mans]
        self.parts = StepParts(
            mans=mans, datasets=self.datasets, caches=self.caches, cache_failed=self.cache_failed, params=self.params,
            labels=labels, device=dev, module=module, autocast=self.autocast, optimizer=optimizer,
            scheduler=scheduler, scaler=self.scaler,
            trainable_params=[p for e in train_encoders for p in e.parameters() if p.requires_grad],
            grad_clip=o.grad_clip, say=self.say)

    def _logs(self) -> None:
        ctx, out, mans, rs = self.ctx, self.out, self.mans, self.run_state
        self.keys = [m.pair if sum(x.pair == m.pair for x in mans) == 1 else f"{m.pair}#{i}"
                     for i, m in enumerate(mans)]
        self.metrics = ck.CsvLog(out / ck.METRICS_FILE, ["step", "epoch", "loss"] + [f"loss_{k}" for k in self.keys]
                                 + ["lr", "items_per_s", "elapsed_s", "skipped"])
        self.val_log = ck.CsvLog(out / ck.VAL_FILE, ["step", "epoch", "pair", "n", "loss", "r1_ab", "r1_ba",
                                                     "chance_ab", "chance_ba", "failed"])
        self.tb = None
        if ctx.main:
            out.mkdir(parents=True, exist_ok=True)
            self.metrics.truncate_after(rs.step)
            self.val_log.truncate_after(rs.step)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # TensorBoard not installed: the CSV files carry the same numbers
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=rs.step or None)
        ctx.barrier()
        s = self.sched
        self.say(f"training {', '.join(self.trainable)} (frozen: {', '.join(self.frozen) or 'none'}) on "
                 + ", ".join(f"{m.name}: {len(m.train_idx)} train / {len(m.val_idx)} val" for m in mans)
                 + f"; {rs.total} steps ({s.n_epochs} epoch(s) of {s.spe}), global batch {self.o.batch_size}"
                 + (f" over {ctx.world} processes" if ctx.distributed else "") + f", device {self.dev}"
                 + (f", amp {self._amp_name()}" if self.use_amp else ""))

    def _amp_name(self) -> str:
        return str(self.amp_dtype).removeprefix("torch.")

    # --- record and checkpoints -------------------------------------------------------------------------------
    def record(self, status: str) -> dict[str, Any]:
        """The training record (``train_record.json``) as of now."""
        o, rs, mans = self.o, self.run_state, self.mans
        data = []
        for i, m in enumerate(mans):
            skipped = self.skipped[skip_key(m, i)]
            data.append({
                "path": str(m.path), "sha256": m.sha256, "media": self.media[i], "pair": m.pair,
                "rows": len(m.rows) + len(m.bad), "skipped_at_validation": len(m.bad), "train": len(m.train_idx),
                "val": len(m.val_idx), "skipped_at_load": len(skipped),
                "skipped_examples": [f"row {r}: {why}" for r, why in list(skipped.items())[:5]],
                "augmented": self.aug_of[m.pair], "cached_sides": [m.a if s == "a" else m.b for s in self.caches[i]]})
        body = {
            "seed": o.seed, "card": self.full_card["name"],
            "base_card": (load_card(o.card).name if o.card is not None else (None if o.init else "bindkit_small")),
            **({"init": self.init_info} if self.init_info else {}),
            "data": data, "modalities": list(self.model.modalities), "trainable": self.trainable,
            "frozen": self.frozen, "steps": rs.step, "total_steps": rs.total, "steps_per_epoch": rs.spe,
            "world_size": self.ctx.world, "device": str(self.dev),
            "amp": self._amp_name() if self.use_amp else None,
            "epochs": rs.history, "best": rs.best, "pairing": {m.name: m.pairing for m in mans},
            **({"stopped_early": {"step": self.stopped_early, "planned_steps": self.planned,
                                  "patience": self.sched.patience}} if self.stopped_early else {}),
            **({"lora": self.lora_run.summary()} if self.lora_run is not None else {}),
        }
        return run_record("bindkit-train-record", status, o.command, self.args, body, self.started)

    def save(self, which: str) -> None:
        """Checkpoint ``which`` (``last`` with everything to resume) and rewrite the record."""
        ctx, rs, parts = self.ctx, self.run_state, self.parts
        rngs = ctx.gather_objects(rng_state())
        if ctx.main:
            sd = {k: v for k, v in self.model.encoders.state_dict().items()} if self.lora_run is None else None
            ts = None
            if which == "last":
                ts = rs.trainer_state(
                    self.args, parts.optimizer, parts.scheduler, rngs, data_sha256=[m.sha256 for m in self.mans],
                    scaler=self.scaler.state_dict() if self.scaler is not None else None, epoch_acc=self.epoch_acc,
                    world_size=ctx.world,
                    skipped={k: {str(r): why for r, why in v.items()} for k, v in self.skipped.items()})
            write = None
            if self.lora_run is not None:  # a LoRA directory (adapters + base pointer) instead of full weights
                write = partial(lora_mod.write, model=self.model, run=self.lora_run, card=self.full_card,
                                meta=_adapter_meta(self.record("running"), which),
                                home=self.out / ck.CKPT_DIR / which)
            run_save(self.out, which, sd, self.full_card, ts, self.record("running"), write=write)
        ctx.barrier()

    def evaluate(self, epoch: int) -> dict[str, Any]:
        """Held-out loss and R@1 of every manifest (rank 0 computes, every rank gets them)."""
        res: dict[str, Any] = {}
        if self.ctx.main and self.o.val_split > 0:
            self.model.eval()
            for i, m in enumerate(self.mans):
                r = validate(self.model, self.datasets[i], self.eval_bs, self.o.workers, self.dev, self.caches[i],
                             autocast=self.autocast)
                if r is not None:
                    res[self.keys[i]] = r
                    self.val_log.append({"step": self.run_state.step, "epoch": epoch, "pair": self.keys[i], **r})
                    if self.tb is not None and "loss" in r:
                        for k in ("loss", "r1_ab", "r1_ba"):
                            self.tb.add_scalar(f"val/{self.keys[i]}/{k}", r[k], self.run_state.step)
            self.set_train_mode()
        return self.ctx.broadcast_object(res)

    # --- the loop ---------------------------------------------------------------------------------------------
    def _train_epochs(self) -> None:
        from ..progress import progress_bar

        o, ctx, rs = self.o, self.ctx, self.run_state
        self.bar = progress_bar(o.progress if ctx.main else False, total=rs.total, initial=rs.step, desc="train",
                                unit="step")
        self.meter = Throughput()
        for epoch, offset in rs.epochs():
            iters = []
            for i, m in enumerate(self.mans):
                batches = epoch_batches(len(m.train_idx), o.batch_size, rs.spe, o.seed, epoch, i)
                sampler = BatchSampler(batches, m.train_idx, epoch, ctx.rank, ctx.world, start=offset)
                iters.append(iter(make_loader(self.datasets[i], sampler, self.params.get("text"), o.workers,
                                              o.seed * 1009 + epoch)))
            for _ in rs.batches(offset):
                self._step(epoch, [next(it) for it in iters])
        self.bar.close()

    def _step(self, epoch: int, loaded: list[Any]) -> None:
        rs = self.run_state
        res = contrastive_step(self.parts, loaded, self.skipped, rs.step)
        rs.advance()
        if not math.isnan(res.loss):
            self.epoch_acc["loss"] += res.loss
            self.epoch_acc["n"] += 1
        ips, now = self.meter.add(res.n_pairs)
        if self.ctx.main:
            self._log_step(epoch, res, ips, now)
        end_of_epoch = rs.end_of_epoch()
        if end_of_epoch:
            self._end_epoch(epoch, res.lr)
        if rs.checkpoint_due(end_of_epoch, self.o.save_every):
            self.save("last")

    def _log_step(self, epoch: int, res: StepOutcome, ips: float, now: float) -> None:
        step = self.run_state.step
        row = {"step": step, "epoch": epoch, "loss": res.loss, "lr": res.lr, "items_per_s": ips,
               "elapsed_s": round(now - self.started, 3), "skipped": sum(len(v) for v in self.skipped.values())}
        for k, x in zip(self.keys, res.losses):
            row[f"loss_{k}"] = float(x.detach()) if x is not None else float("nan")
        self.metrics.append(row)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", res.loss, step)
            self.tb.add_scalar("train/lr", res.lr, step)
        self.bar.set_postfix(loss=f"{res.loss:.4f}", lr=f"{res.lr:.2e}", items_s=f"{ips:.1f}", refresh=False)
        self.bar.update(1)

    def _end_epoch(self, epoch: int, lr_now: float) -> None:
        """Validate, log the epoch, save ``best`` when it is, and stop early when patience ran out."""
        rs, say, patience = self.run_state, self.say, self.sched.patience
        val = self.evaluate(epoch)
        entry = {"epoch": epoch, "step": rs.step, "train_loss": self.epoch_acc["loss"] / max(1, self.epoch_acc["n"]),
                 "lr": lr_now, "val": val}
        scores = [0.5 * (v["r1_ab"] + v["r1_ba"]) for v in val.values() if "r1_ab" in v]
        if scores:
            entry["val_score"] = float(np.mean(scores))
        rs.history.append(entry)
        self.epoch_acc = {"loss": 0.0, "n": 0}
        msg = "; ".join(f"{k} R@1 {v['r1_ab']:.3f}/{v['r1_ba']:.3f} (chance {v['chance_ab']:.3f})"
                        for k, v in val.items() if "r1_ab" in v)
        say(f"epoch {epoch + 1}/{self.sched.n_epochs}: train loss {entry['train_loss']:.4f}"
            + (f"; val {msg}" if msg else ""))
        if scores and (rs.best is None or entry["val_score"] > rs.best["val_score"]):
            rs.best = {"epoch": epoch, "step": rs.step, "val_score": entry["val_score"]}
            self.save("best")
        best = rs.best
        if patience and best is not None and epoch - best["epoch"] >= patience and rs.step < rs.total:
            say(f"early stop: no better held-out score for {patience} epochs (best: epoch "
                f"{best['epoch'] + 1}, {best['val_score']:.3f}); publishing the best epoch")
            self.stopped_early = rs.step
            rs.total = rs.step

    def _finish(self) -> TrainResult:
        ctx, rs, out = self.ctx, self.run_state, self.out
        finished = rs.finished
        rec: dict[str, Any] = {}
        if ctx.main:
            published = None
            if finished:
                ck.refuse_untrained(out, self.skipped)  # every item failed to load: publish nothing
                published = run_publish(out, rs.best)
                if self.lora_run is not None:
                    refresh_base_link(out)
            rec = self.record("finished" if finished else "paused")
            if finished:
                rec["published"] = published
                rec["fingerprints"] = fingerprints(json.loads((out / "manifest.json").read_text()))
            ck.write_record(out, rec)
            if self.tb is not None:
                self.tb.close()
        ctx.barrier()
        if ctx.main:
            say_done(self.say, rs, out)
        return TrainResult(out=out, step=rs.step, total_steps=rs.total, finished=finished, epochs=rs.history,
                           best=rs.best, record=rec)
