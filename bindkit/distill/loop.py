"""``distill``: train a small student to reproduce a teacher's unit vectors for one modality.

The run: read the unpaired items of the modality; embed them all with the teacher once, into the on-disk cache
(:mod:`.cache`; resumable chunk by chunk); build the student from its card (one encoder, the teacher's output
dimension) and start it from the teacher's tensors of the same names (sliced where it is smaller); then AdamW
(betas 0.9, 0.95; warm-up + cosine; gradient clipping) on ``1 - cos(student, teacher) + w * InfoNCE``
(:mod:`.loss`). A small held-out split reports the mean student-teacher cosine every epoch; the best epoch is
published. Data order is a function of
(seed, epoch), so ``resume=True`` continues a killed run at its last checkpoint as if it had not stopped.

The output directory is a model directory like ``bindkit train``'s (``bindkit.load_model(OUT)``, ``--model
OUT``)::

    OUT/
      card.json  manifest.json  <encoder>.safetensors   the student; card.json's weights.distilled and
                                                        manifest.json's "distilled" record whose space it serves
                                                        (teacher card, dimension, modality, teacher fingerprints)
      distill_record.json    data (sources, count, sha256), arguments, teacher, cache, metrics per epoch, timing
      metrics.csv            one row per step (loss, cosine, InfoNCE, lr, items/s)
      teacher_cache/         the teacher's vectors (unless --cache puts them elsewhere); may be deleted after
      checkpoints/last, checkpoints/best    as bindkit train (--resume continues from last)
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..cards import load_card
from ..modality import encoder_of, input_kind
from ..train import checkpoint as ck
from ..train.encode import encode_side
from ..train.optim import fraction_or_steps, param_groups
from ..train.run import (RunState, Throughput, args_snapshot, build_adamw, build_scheduler, fingerprints,
                         log_to_stderr, refuse_changed_args, refuse_non_empty, restore_optimiser, rng_state,
                         run_record, say_done, set_rng_state)
from ..train.run import publish as run_publish
from ..train.run import save as run_save
from .cache import TeacherCache, cache_meta
from .data import DistillError, Items, read_items, split_rows
from .loss import distill_loss
from .options import DistillArgumentError, DistillOptions
from .student import StudentInputs, copy_teacher_tensors, make_student_card, teacher_fingerprints, teacher_source

RECORD_FILE = "distill_record.json"
CACHE_DIR = "teacher_cache"
#: Arguments that must not change between a run and its --resume.
_RESUME_KEYS = ("teacher", "teacher_fingerprint", "modality", "student_card", "data_sha256", "epochs", "batch_size",
                "lr", "weight_decay", "warmup", "grad_clip", "contrastive", "temperature", "teacher_targets", "seed",
                "val_split", "max_steps", "name", "init_from_teacher", "teacher_blocks")


@dataclass
class DistillResult:
    """What :func:`distill` returns: the output directory, the step reached, whether it finished, the per-epoch
    history, the best epoch, the teacher-cache statistics and the record written to ``distill_record.json``."""

    out: Path
    step: int
    total_steps: int
    finished: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def _load_teacher(teacher: Any, weights: Any, kind: str, device: torch.device) -> Any:
    import bindkit

    if hasattr(teacher, "encoders") and hasattr(teacher, "fingerprint"):
        if encoder_of(kind) not in teacher.modalities:
            raise DistillArgumentError(f"the teacher model has no {encoder_of(kind)} encoder for {kind} items (it "
                                       f"has {', '.join(teacher.modalities)})")
        return teacher
    return bindkit.load_model(teacher, weights=weights, modalities=[kind], device=device)


def distill(
    teacher: Any,
    data: "str | os.PathLike | Sequence[Any]",
    out: str | os.PathLike,
    *,
    student_card: Any,
    modality: str = "text",
    teacher_weights: str | os.PathLike | None = None,
    column: str | None = None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.01,
    warmup: float = 0.05,
    grad_clip: float = 1.0,
    contrastive: float = 0.1,
    temperature: float = 0.05,
    teacher_targets: bool = True,
    seed: int = 0,
    val_split: float = 0.02,
    init_from_teacher: bool = True,
    teacher_blocks: Sequence[int] | None = None,
    max_steps: int | None = None,
    save_every: int | None = None,
    stop_after: int | None = None,
    resume: bool = False,
    cache: str | os.PathLike | None = None,
    cache_chunk: int = 4096,
    teacher_batch_size: int = 256,
    device: str | torch.device | None = None,
    workers: int = 0,
    name: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> DistillResult:
    """Distil ``teacher``'s ``modality`` encoder into a student built from ``student_card``; write it to ``out``.

    Args:
        teacher: the model whose space the student serves: a model directory, a card name (with
            ``teacher_weights`` or its local weights), or a loaded model.
        data: unpaired items of ``modality``: a ``.txt`` file (texts, one per line), a manifest (.csv/.jsonl/
            .parquet; the column named by the modality, or ``column``), a folder of media, a list of those as
            ``pathlib.Path``, or a list of the items themselves as ``str`` (texts, or media paths); see
            :func:`bindkit.distill.data.read_items`.
        out: output directory (see :mod:`bindkit.distill.loop`); ``bindkit.load_model(out)`` loads the student.
        student_card: card (name, path, dict) of the student's architecture; only its ``modality`` encoder is
            used, and its ``out_embed_dim`` must equal the teacher's dimension.
        epochs, batch_size, lr, weight_decay, warmup, grad_clip, seed: as ``bindkit train`` (warm-up: a fraction
            of the steps when < 1, else a step count).
        contrastive, temperature, teacher_targets: weight, temperature and targets (the teacher's in-batch
            distribution, or one-hot) of the InfoNCE term (:func:`bindkit.distill.loss.distill_loss`).
        val_split: fraction of the items held out to report the student-teacher cosine each epoch (and pick the
            best epoch); 0: none (the last epoch is published).
        init_from_teacher: start from the teacher's tensors wherever the student has a parameter of the same
            name, sliced where the student is narrower or shallower
            (:func:`bindkit.distill.student.copy_teacher_tensors`).
        teacher_blocks: which teacher block starts each student block, e.g. ``[0, 3]`` for a 2-block student of
            a 4-block teacher (its first and last, as DistilBERT keeps every other layer); default the first ones.
            (For bindkit_toy's text, [0, 3] and [0, 1] ended within 0.001 of cosine of each other.)
        max_steps: train exactly this many steps instead of ``epochs`` epochs.
        save_every, stop_after, resume: checkpoint every N steps; checkpoint and return after N steps of this
            call; continue the run in ``out`` (after an interrupted teacher-cache fill, too).
        cache: folder of the teacher-vector cache (default ``out/teacher_cache``); another run on the same data
            and teacher reuses it. ``cache_chunk``: items per cache file.
        teacher_batch_size: items per teacher forward pass while filling the cache.
        device: ``cpu``, ``cuda``... (default: :func:`bindkit.auto_device`: ``$BINDKIT_DEVICE``, else cuda when
            available, else cpu).
        workers: threads loading media items (default: up to 8).
        name: the student's card name (default: the output folder's name).
        progress: progress bars (None: when stderr is a terminal). ``log``: where messages go (stderr).

    Returns:
        :class:`DistillResult`.

    Raises:
        DistillError: unusable data; DistillArgumentError (an ArgumentError and a DistillError): a bad argument.
        CardError: a student card without the encoder, or of another dimension.
        CheckpointError: ``out`` not empty without ``resume``; ``resume`` with other arguments or data; a cache
            of other vectors.
    """
    return distill_with(DistillOptions(
        teacher=teacher, data=data, out=out, student_card=student_card, modality=modality,
        teacher_weights=teacher_weights, column=column, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip, contrastive=contrastive,
        temperature=temperature, teacher_targets=teacher_targets, seed=seed, val_split=val_split,
        init_from_teacher=init_from_teacher, teacher_blocks=teacher_blocks, max_steps=max_steps,
        save_every=save_every, stop_after=stop_after, resume=resume, cache=cache, cache_chunk=cache_chunk,
        teacher_batch_size=teacher_batch_size, device=device, workers=workers, name=name, progress=progress, log=log,
        command=command))


def distill_with(options: DistillOptions) -> DistillResult:
    """:func:`distill` with its arguments as :class:`~bindkit.distill.options.DistillOptions` (what the CLI
    builds)."""
    return _Distillation(options).run()


class _Distillation:
    """One call of :func:`distill`: the setup phases (:meth:`_arguments` ... :meth:`_optimiser`) fill in the
    attributes in order; :meth:`run` then runs the epochs and publishes."""

    def __init__(self, options: DistillOptions) -> None:
        self.o = options
        self.started = time.time()
        self.say = options.log or log_to_stderr
        self.kind = input_kind(options.modality)
        self.enc = encoder_of(self.kind)

    def run(self) -> DistillResult:
        self._arguments()
        self._teacher()
        state = self._resume_state()
        self._teacher_vectors()
        self._student(state)
        self._optimiser(state)
        self._train_epochs()
        return self._finish()

    # --- setup ------------------------------------------------------------------------------------------------
    def _arguments(self) -> None:
        from ..factory import auto_device, resolve_device

        o = self.o
        o.check()
        self.out = Path(o.out).expanduser().resolve()
        self.name = o.name or self.out.name
        self.dev = resolve_device(o.device) if o.device else auto_device()
        if not o.resume:
            refuse_non_empty(self.out, "--resume (resume=True)")

    def _teacher(self) -> None:
        """Data, teacher, student card and the arguments' snapshot (all checked before any teacher forward pass)."""
        o, kind, enc = self.o, self.kind, self.enc
        self.items = items = read_items(o.data, kind, o.column)
        self.say(items.summary())
        self.data_sha = items.digest()
        self.t_model = t_model = _load_teacher(o.teacher, o.teacher_weights, kind, self.dev)
        t_model.eval()
        t_source = teacher_source(o.teacher, o.teacher_weights)
        weights = o.teacher_weights
        self.distilled = distilled = {
            "teacher": t_model.card.name, "teacher_dim": int(t_model.dim), "modality": kind, "encoder": enc,
            "teacher_fingerprint": t_model.fingerprint(enc),
            "teacher_fingerprints": teacher_fingerprints(t_model, o.teacher), "teacher_source": t_source,
            "teacher_weights": str(Path(weights).resolve()) if weights is not None and
            isinstance(weights, (str, os.PathLike)) else None}
        distilled["student_card"] = load_card(o.student_card).name
        self.card = make_student_card(o.student_card, t_model, kind, self.name, distilled)
        self.teacher_blocks = o.teacher_blocks
        if self.teacher_blocks is not None:
            self.teacher_blocks = [int(b) for b in self.teacher_blocks]
            n_student = int(self.card["modalities"][enc]["num_blocks"])
            if len(self.teacher_blocks) != n_student:
                raise DistillArgumentError(f"teacher_blocks {self.teacher_blocks}: give one teacher block per "
                                           f"student block (the student has {n_student})")
        self.args = args_snapshot(
            teacher=t_model.card.name, teacher_fingerprint=distilled["teacher_fingerprint"], teacher_source=t_source,
            modality=kind, student_card=distilled["student_card"], data=[str(s) for s in items.sources],
            data_sha256=self.data_sha, epochs=o.epochs, batch_size=o.batch_size, lr=o.lr,
            weight_decay=o.weight_decay, warmup=o.warmup, grad_clip=o.grad_clip, contrastive=o.contrastive,
            temperature=o.temperature, teacher_targets=o.teacher_targets, seed=o.seed, val_split=o.val_split,
            max_steps=o.max_steps, name=self.name, init_from_teacher=o.init_from_teacher,
            teacher_blocks=self.teacher_blocks, save_every=o.save_every,
            cache=str(o.cache) if o.cache is not None else None, device=str(self.dev))

    def _resume_state(self) -> dict[str, Any] | None:
        state: dict[str, Any] | None = None
        self.last = ck.checkpoint_dir(self.out, "last") if self.o.resume else None
        if self.last is not None:
            state = ck.load_trainer_state(self.last)
            refuse_changed_args(state["args"], self.args, _RESUME_KEYS, self.out, what="the arguments and data",
                                show=_brief)
        elif self.o.resume:
            self.say(f"{self.out}: no checkpoint yet; training starts at step 0 (teacher vectors already cached are "
                     "reused)")
        self.out.mkdir(parents=True, exist_ok=True)
        return state

    def _teacher_vectors(self) -> None:
        """The teacher's vectors of every item, once (cached), and the split of the usable ones."""
        from ..inputs.batch import resolve_params

        o, kind, t_model, items, say = self.o, self.kind, self.t_model, self.items, self.say
        t_params = resolve_params(kind, t_model)
        self.tcache = tcache = TeacherCache.open(
            Path(o.cache).expanduser() if o.cache is not None else self.out / CACHE_DIR,
            cache_meta(t_model, kind, t_params, len(items), self.data_sha, o.cache_chunk))
        self.fill = fill = tcache.fill(t_model, items.items, batch_size=o.teacher_batch_size, progress=o.progress,
                                       log=say)
        if fill["computed"]:
            say(f"teacher {t_model.card.name}: {fill['computed']} {kind} vectors computed in {fill['seconds']:.1f}s "
                f"({fill['items_per_s']} items/s), cached in {tcache.root}")
        self.targets_np, self.failed = tcache.load()
        if self.failed:
            first = "; ".join(f"{items.items[r]}: {why}" for r, why in list(self.failed.items())[:3])
            say(f"{len(self.failed)} item(s) the teacher could not load are left out (first: {first})")
        usable = [r for r in range(len(items)) if r not in self.failed]
        self.train_rows, self.val_rows = split_rows(usable, o.val_split, o.seed)
        if len(self.train_rows) < 2:
            raise DistillError(f"only {len(self.train_rows)} usable training item(s); distillation needs many more")

    def _student(self, state: dict[str, Any] | None) -> None:
        """The student, from the teacher's tensors (or the checkpoint), on the device, in train mode."""
        import bindkit
        from ..inputs.batch import resolve_params

        o, enc = self.o, self.enc
        torch.manual_seed(o.seed)
        self.student = student = bindkit.build_model(self.card, modalities=[enc])
        self.s_enc = s_enc = student.encoders[enc]
        whole, sliced = copy_teacher_tensors(s_enc, self.t_model.encoders[enc], self.teacher_blocks) \
            if o.init_from_teacher and state is None else ([], [])
        self.copied = {"whole": whole, "sliced": sliced}
        if state is not None:  # what the run started from, as recorded then
            self.copied = state.get("initialised_from_teacher", self.copied)
        if whole or sliced:
            self.say("student initialised from the teacher: " + "; ".join(
                f"{what} {_summary(names)}" for what, names in (("copied", whole), ("sliced", sliced)) if names))
        s_params = resolve_params(self.kind, student)
        if o.teacher is not self.t_model:  # we loaded it: free it before training
            del self.t_model
        self.inputs = StudentInputs(self.kind, self.items.items, s_params, o.workers)
        self.targets = torch.from_numpy(self.targets_np)
        if state is not None:
            student.encoders.load_state_dict(ck.load_model_state(self.last), strict=True)
        student.to(self.dev)
        s_enc.train()
        self.n_params = sum(p.numel() for p in s_enc.parameters())

    def _optimiser(self, state: dict[str, Any] | None) -> None:
        o = self.o
        spe = math.ceil(len(self.train_rows) / o.batch_size)
        total = o.epochs * spe if o.max_steps is None else int(o.max_steps)
        self.n_epochs = math.ceil(total / spe)
        self.optimizer = build_adamw(param_groups([self.s_enc], o.weight_decay), o.lr, device=self.dev, fused=True)
        self.scheduler = build_scheduler(self.optimizer, fraction_or_steps(o.warmup, total), total)
        self.run_state = rs = RunState(total=total, spe=spe, stop_after=o.stop_after)
        self.skipped: dict[int, str] = {}
        if state is not None:
            rs.step = int(state["step"])
            restore_optimiser(state, self.optimizer, self.scheduler)
            rs.history, rs.best, self.skipped = list(state["history"]), state["best"], dict(state.get("skipped", {}))
            set_rng_state(state["rng"])
            self.say(f"resuming {self.out} at step {rs.step} of {total}")
        self.metrics = ck.CsvLog(self.out / ck.METRICS_FILE, ["step", "epoch", "loss", "cosine", "nce", "lr",
                                                              "items_per_s", "elapsed_s"])
        self.metrics.truncate_after(rs.step)
        cfg = self.card["modalities"][self.enc]
        self.say(f"distilling {self.distilled['teacher']}'s {self.kind} encoder into {self.name} (width "
                 f"{cfg['embed_dim']}, {cfg['num_blocks']} block(s), {self.n_params / 1e6:.2f}M parameters): "
                 f"{len(self.train_rows)} train / {len(self.val_rows)} held-out items; {total} steps "
                 f"({self.n_epochs} epoch(s) of {spe}), batch {o.batch_size}, device {self.dev}")

    # --- record and checkpoints -------------------------------------------------------------------------------
    def record(self, status: str) -> dict[str, Any]:
        """The distillation record (``distill_record.json``) as of now."""
        items, rs = self.items, self.run_state
        body = {"distilled": self.distilled, "student_parameters": self.n_params,
                "data": {"sources": items.sources, "items": len(items), "sha256": self.data_sha,
                         "skipped": len(items.skipped), "duplicates": items.duplicates, "ignored": items.ignored,
                         "teacher_failed": len(self.failed), "train": len(self.train_rows),
                         "held_out": len(self.val_rows), "skipped_at_load": len(self.skipped)},
                "cache": {"path": str(self.tcache.root), **self.fill}, "initialised_from_teacher": self.copied,
                "steps": rs.step, "total_steps": rs.total, "steps_per_epoch": rs.spe, "device": str(self.dev),
                "epochs": rs.history, "best": rs.best}
        return run_record("bindkit-distill-record", status, self.o.command, self.args, body, self.started)

    def save(self, which: str) -> None:
        """Checkpoint ``which`` (``last`` with everything to resume) and rewrite the record."""
        ts = None
        if which == "last":
            ts = self.run_state.trainer_state(self.args, self.optimizer, self.scheduler, rng_state(),
                                              skipped=self.skipped, initialised_from_teacher=self.copied)
        run_save(self.out, which, self.student.encoders.state_dict(), self.card, ts, self.record("running"),
                 record_name=RECORD_FILE)

    # --- the loop ---------------------------------------------------------------------------------------------
    def _train_epochs(self) -> None:
        from ..progress import progress_bar

        o, rs = self.o, self.run_state
        self.bar = progress_bar(o.progress, total=rs.total, initial=rs.step, desc="distill", unit="step")
        self.meter = Throughput()
        self.acc = {"loss": 0.0, "cos": 0.0, "n": 0}
        for epoch, offset in rs.epochs():
            order = np.random.default_rng([int(o.seed), epoch]).permutation(np.asarray(self.train_rows))
            for b in rs.batches(offset):
                self._step(epoch, order[b * o.batch_size:(b + 1) * o.batch_size].tolist())
        self.bar.close()

    def _step(self, epoch: int, batch_rows: list[int]) -> None:
        """One step on ``batch_rows``: the student's vectors against the teacher's (no update when none loads)."""
        o, rs, dev = self.o, self.run_state, self.dev
        x, rows, bad = self.inputs.batch(batch_rows)
        self.skipped.update(bad)
        lr_now = self.scheduler.get_last_lr()[0]
        loss_v, cos_v, nce_v = float("nan"), float("nan"), float("nan")
        if x is not None and len(rows) >= 1:
            z = encode_side(self.s_enc, self.kind, x.to(dev))
            loss, parts = distill_loss(z, self.targets[rows].to(dev), contrastive=o.contrastive,
                                       temperature=o.temperature, teacher_targets=o.teacher_targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip and o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.s_enc.parameters(), o.grad_clip)
            self.optimizer.step()
            loss_v, cos_v, nce_v = float(loss.detach()), parts["cosine"], parts["nce"]
            self.acc["loss"] += loss_v
            self.acc["cos"] += cos_v
            self.acc["n"] += 1
        self.scheduler.step()
        rs.advance()
        ips, now = self.meter.add(len(rows))
        self.metrics.append({"step": rs.step, "epoch": epoch, "loss": loss_v, "cosine": cos_v, "nce": nce_v,
                             "lr": lr_now, "items_per_s": ips, "elapsed_s": round(now - self.started, 3)})
        self.bar.set_postfix(loss=f"{loss_v:.4f}", cos=f"{cos_v:.4f}", refresh=False)
        self.bar.update(1)
        end_of_epoch = rs.end_of_epoch()
        if end_of_epoch:
            self._end_epoch(epoch, lr_now)
        if rs.checkpoint_due(end_of_epoch, o.save_every):
            self.save("last")

    def _end_epoch(self, epoch: int, lr_now: float) -> None:
        """The epoch's train and held-out cosine; save ``best`` when it is."""
        rs, acc = self.run_state, self.acc
        entry = {"epoch": epoch, "step": rs.step, "train_loss": acc["loss"] / max(1, acc["n"]),
                 "train_cosine": acc["cos"] / max(1, acc["n"]), "lr": lr_now}
        self.acc = {"loss": 0.0, "cos": 0.0, "n": 0}
        if self.val_rows:
            entry["val_cosine"] = held_out_cosine(self.s_enc, self.kind, self.inputs, self.targets, self.val_rows,
                                                  self.dev, self.o.batch_size)
            self.s_enc.train()
        rs.history.append(entry)
        self.say(f"epoch {epoch + 1}/{self.n_epochs}: loss {entry['train_loss']:.4f}, train cosine "
                 f"{entry['train_cosine']:.4f}" + (f", held-out cosine {entry['val_cosine']:.4f}"
                                                   if "val_cosine" in entry else ""))
        if "val_cosine" in entry and (rs.best is None or entry["val_cosine"] > rs.best["val_cosine"]):
            rs.best = {"epoch": epoch, "step": rs.step, "val_cosine": entry["val_cosine"]}
            self.save("best")

    def _finish(self) -> DistillResult:
        rs, out = self.run_state, self.out
        finished = rs.finished
        rec = self.record("finished" if finished else "paused")
        if finished:
            rec["published"] = run_publish(out, rs.best)
            manifest = json.loads((out / "manifest.json").read_text())
            manifest.update({"source": "bindkit distill", "distilled": self.distilled})
            ck.write_json(out / "manifest.json", manifest)
            rec["fingerprints"] = fingerprints(manifest)
        ck.write_record(out, rec, RECORD_FILE)
        say_done(self.say, rs, out)
        return DistillResult(out=out, step=rs.step, total_steps=rs.total, finished=finished, history=rs.history,
                             best=rs.best, cache={"path": str(self.tcache.root), **self.fill}, record=rec)


@torch.no_grad()
def held_out_cosine(encoder: torch.nn.Module, kind: str, inputs: StudentInputs, targets: torch.Tensor,
                    rows: Sequence[int], device: torch.device, batch_size: int) -> float:
    """Mean cosine between the student's vectors (eval mode) and the teacher's on ``rows``."""
    encoder.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x, got, _ = inputs.batch(list(rows[i:i + batch_size]))
        if x is None:
            continue
        z = encode_side(encoder, kind, x.to(device))
        total += float((z * targets[got].to(device)).sum(dim=-1).sum())
        n += len(got)
    return total / max(1, n)


def _summary(names: list[str]) -> str:
    """``"stem.token_embedding, trunk.blocks.0.* (12), head.* (3)"``: tensor names grouped by module."""
    groups: dict[str, int] = {}
    for n in names:
        parts = n.split(".")
        if parts[:2] == ["trunk", "blocks"]:
            key = ".".join(parts[:3])
        elif parts[0] == "head":
            key = "head"
        else:
            key = ".".join(parts[:-1]) if parts[-1] in ("weight", "bias") else n
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(k if c == 1 else f"{k}.* ({c})" for k, c in groups.items())


def _brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:28] + "…" + text[-28:]


__all__ = ["DistillOptions", "DistillResult", "Items", "distill", "distill_with", "held_out_cosine"]
