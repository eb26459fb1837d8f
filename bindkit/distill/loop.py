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
from ..errors import CheckpointError
from ..fileio import atomic_write_bytes
from ..modality import encoder_of, input_kind
from ..train import checkpoint as ck
from ..train.loop import encode_side, fraction_or_steps, lr_lambda, param_groups
from ..train.trainer import _args_snapshot, _log_to_stderr, _rng_state, _set_rng_state
from .cache import TeacherCache, cache_meta
from .data import DistillError, Items, read_items, split_rows
from .loss import distill_loss
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
            raise DistillError(f"the teacher model has no {encoder_of(kind)} encoder for {kind} items (it has "
                               f"{', '.join(teacher.modalities)})")
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
        DistillError: unusable data. CardError: a student card without the encoder, or of another dimension.
        CheckpointError: ``out`` not empty without ``resume``; ``resume`` with other arguments or data; a cache
            of other vectors.
    """
    from ..factory import auto_device, resolve_device

    started = time.time()
    say = log or _log_to_stderr
    kind = input_kind(modality)
    enc = encoder_of(kind)
    for label, v, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("cache_chunk", cache_chunk, 1)):
        if int(v) < lo:
            raise DistillError(f"{label} must be at least {lo}, got {v!r}")
    if not 0 <= val_split < 1:
        raise DistillError(f"val_split must be in [0, 1), got {val_split!r}")
    if temperature <= 0 or contrastive < 0:
        raise DistillError(f"temperature must be > 0 and contrastive >= 0 (got {temperature}, {contrastive})")
    out = Path(out).expanduser().resolve()
    name = name or out.name
    dev = resolve_device(device) if device else auto_device()
    if not resume and out.exists() and any(out.iterdir()):
        raise CheckpointError(f"output directory {out} is not empty; continue that run with --resume "
                              "(resume=True), or choose another --out")

    # --- data, teacher, student card (all checked before any teacher forward pass) -----------------------------
    items = read_items(data, kind, column)
    say(items.summary())
    data_sha = items.digest()
    t_model = _load_teacher(teacher, teacher_weights, kind, dev)
    t_model.eval()
    t_source = teacher_source(teacher, teacher_weights)
    fingerprints = teacher_fingerprints(t_model, teacher)
    record = {"teacher": t_model.card.name, "teacher_dim": int(t_model.dim), "modality": kind, "encoder": enc,
              "teacher_fingerprint": t_model.fingerprint(enc), "teacher_fingerprints": fingerprints,
              "teacher_source": t_source,
              "teacher_weights": str(Path(teacher_weights).resolve()) if teacher_weights is not None and
              isinstance(teacher_weights, (str, os.PathLike)) else None}
    record["student_card"] = load_card(student_card).name
    card = make_student_card(student_card, t_model, kind, name, record)
    if teacher_blocks is not None:
        teacher_blocks = [int(b) for b in teacher_blocks]
        n_student = int(card["modalities"][enc]["num_blocks"])
        if len(teacher_blocks) != n_student:
            raise DistillError(f"teacher_blocks {teacher_blocks}: give one teacher block per student block (the "
                               f"student has {n_student})")
    args = _args_snapshot(teacher=t_model.card.name, teacher_fingerprint=record["teacher_fingerprint"],
                          teacher_source=t_source, modality=kind, student_card=record["student_card"],
                          data=[str(s) for s in items.sources], data_sha256=data_sha, epochs=epochs,
                          batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                          grad_clip=grad_clip, contrastive=contrastive, temperature=temperature,
                          teacher_targets=teacher_targets, seed=seed,
                          val_split=val_split, max_steps=max_steps, name=name, init_from_teacher=init_from_teacher,
                          teacher_blocks=teacher_blocks,
                          save_every=save_every, cache=str(cache) if cache is not None else None, device=str(dev))
    state: dict[str, Any] | None = None
    last = ck.checkpoint_dir(out, "last") if resume else None
    if last is not None:
        state = ck.load_trainer_state(last)
        changed = [k for k in _RESUME_KEYS if state["args"].get(k) != args.get(k)]
        if changed:
            diffs = "; ".join(f"{k}: {_brief(state['args'].get(k))} then, {_brief(args.get(k))} now" for k in changed)
            raise CheckpointError(f"--resume needs the arguments and data of the run in {out}; changed: {diffs}")
    elif resume:
        say(f"{out}: no checkpoint yet; training starts at step 0 (teacher vectors already cached are reused)")
    out.mkdir(parents=True, exist_ok=True)

    # --- teacher vectors, once ------------------------------------------------------------------------------
    from ..inputs.batch import resolve_params

    t_params = resolve_params(kind, t_model)
    tcache = TeacherCache.open(Path(cache).expanduser() if cache is not None else out / CACHE_DIR,
                               cache_meta(t_model, kind, t_params, len(items), data_sha, cache_chunk))
    fill = tcache.fill(t_model, items.items, batch_size=teacher_batch_size, progress=progress, log=say)
    if fill["computed"]:
        say(f"teacher {t_model.card.name}: {fill['computed']} {kind} vectors computed in {fill['seconds']:.1f}s "
            f"({fill['items_per_s']} items/s), cached in {tcache.root}")
    targets_np, failed = tcache.load()
    if failed:
        first = "; ".join(f"{items.items[r]}: {why}" for r, why in list(failed.items())[:3])
        say(f"{len(failed)} item(s) the teacher could not load are left out (first: {first})")
    usable = [r for r in range(len(items)) if r not in failed]
    train_rows, val_rows = split_rows(usable, val_split, seed)
    if len(train_rows) < 2:
        raise DistillError(f"only {len(train_rows)} usable training item(s); distillation needs many more")

    # --- student --------------------------------------------------------------------------------------------
    import bindkit

    torch.manual_seed(seed)
    student = bindkit.build_model(card, modalities=[enc])
    s_enc = student.encoders[enc]
    whole, sliced = copy_teacher_tensors(s_enc, t_model.encoders[enc], teacher_blocks) \
        if init_from_teacher and state is None else ([], [])
    copied = {"whole": whole, "sliced": sliced}
    if state is not None:  # what the run started from, as recorded then
        copied = state.get("initialised_from_teacher", copied)
    if whole or sliced:
        say("student initialised from the teacher: " + "; ".join(
            f"{what} {_summary(names)}" for what, names in (("copied", whole), ("sliced", sliced)) if names))
    s_params = resolve_params(kind, student)
    if teacher is not t_model:  # we loaded it: free it before training
        del t_model
    inputs = StudentInputs(kind, items.items, s_params, workers)
    targets = torch.from_numpy(targets_np)
    if state is not None:
        student.encoders.load_state_dict(ck.load_model_state(last), strict=True)
    student.to(dev)
    s_enc.train()
    n_params = sum(p.numel() for p in s_enc.parameters())

    spe = math.ceil(len(train_rows) / batch_size)
    total = epochs * spe if max_steps is None else int(max_steps)
    n_epochs = math.ceil(total / spe)
    optimizer = _adamw(param_groups([s_enc], weight_decay), lr, dev)
    warm = fraction_or_steps(warmup, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(s, warm, total))
    step, history, best = 0, [], None
    skipped: dict[int, str] = {}
    if state is not None:
        step = int(state["step"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, skipped = list(state["history"]), state["best"], dict(state.get("skipped", {}))
        _set_rng_state(state["rng"])
        say(f"resuming {out} at step {step} of {total}")
    metrics = ck.CsvLog(out / ck.METRICS_FILE, ["step", "epoch", "loss", "cosine", "nce", "lr", "items_per_s",
                                                "elapsed_s"])
    metrics.truncate_after(step)
    cfg = card["modalities"][enc]
    say(f"distilling {record['teacher']}'s {kind} encoder into {name} (width {cfg['embed_dim']}, "
        f"{cfg['num_blocks']} block(s), {n_params / 1e6:.2f}M parameters): "
        f"{len(train_rows)} train / {len(val_rows)} held-out items; {total} steps ({n_epochs} epoch(s) of {spe}), "
        f"batch {batch_size}, device {dev}")

    def record_of(status: str) -> dict[str, Any]:
        return {"format": "bindkit-distill-record", "format_version": 1, "status": status,
                "bindkit_version": bindkit.__version__, "torch_version": torch.__version__, "command": command,
                "arguments": args, "distilled": record, "student_parameters": n_params,
                "data": {"sources": items.sources, "items": len(items), "sha256": data_sha,
                         "skipped": len(items.skipped), "duplicates": items.duplicates, "ignored": items.ignored,
                         "teacher_failed": len(failed), "train": len(train_rows), "held_out": len(val_rows),
                         "skipped_at_load": len(skipped)},
                "cache": {"path": str(tcache.root), **fill}, "initialised_from_teacher": copied,
                "steps": step, "total_steps": total, "steps_per_epoch": spe, "device": str(dev),
                "epochs": history, "best": best, "wall_s": round(time.time() - started, 1)}

    def save(which: str) -> None:
        ts = None
        if which == "last":
            ts = {"step": step, "args": args, "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "rng": _rng_state(), "history": history, "best": best,
                  "skipped": skipped, "initialised_from_teacher": copied}
        ck.save_checkpoint(out, which, student.encoders.state_dict(), card, ts)
        _write_json(out / RECORD_FILE, record_of("running"))

    # --- the loop -------------------------------------------------------------------------------------------
    from ..progress import progress_bar

    bar = progress_bar(progress, total=total, initial=step, desc="distill", unit="step")
    done_here, rate_items, rate_t = 0, 0, time.time()
    acc = {"loss": 0.0, "cos": 0.0, "n": 0}
    while step < total and not (stop_after is not None and done_here >= stop_after):
        epoch, offset = divmod(step, spe)
        order = np.random.default_rng([int(seed), epoch]).permutation(np.asarray(train_rows))
        for b in range(offset, spe):
            if step >= total or (stop_after is not None and done_here >= stop_after):
                break
            x, rows, bad = inputs.batch(order[b * batch_size:(b + 1) * batch_size].tolist())
            skipped.update(bad)
            lr_now = scheduler.get_last_lr()[0]
            loss_v, cos_v, nce_v = float("nan"), float("nan"), float("nan")
            if x is not None and len(rows) >= 1:
                z = encode_side(s_enc, kind, x.to(dev))
                loss, parts = distill_loss(z, targets[rows].to(dev), contrastive=contrastive,
                                           temperature=temperature, teacher_targets=teacher_targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip and grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(s_enc.parameters(), grad_clip)
                optimizer.step()
                loss_v, cos_v, nce_v = float(loss.detach()), parts["cosine"], parts["nce"]
                acc["loss"] += loss_v
                acc["cos"] += cos_v
                acc["n"] += 1
            scheduler.step()
            step += 1
            done_here += 1
            rate_items += len(rows)
            now = time.time()
            ips = rate_items / max(now - rate_t, 1e-9)
            if now - rate_t > 30:
                rate_items, rate_t = 0, now
            metrics.append({"step": step, "epoch": epoch, "loss": loss_v, "cosine": cos_v, "nce": nce_v,
                            "lr": lr_now, "items_per_s": ips, "elapsed_s": round(now - started, 3)})
            bar.set_postfix(loss=f"{loss_v:.4f}", cos=f"{cos_v:.4f}", refresh=False)
            bar.update(1)
            end_of_epoch = step % spe == 0 or step == total
            if end_of_epoch:
                entry = {"epoch": epoch, "step": step, "train_loss": acc["loss"] / max(1, acc["n"]),
                         "train_cosine": acc["cos"] / max(1, acc["n"]), "lr": lr_now}
                acc = {"loss": 0.0, "cos": 0.0, "n": 0}
                if val_rows:
                    entry["val_cosine"] = held_out_cosine(s_enc, kind, inputs, targets, val_rows, dev, batch_size)
                    s_enc.train()
                history.append(entry)
                say(f"epoch {epoch + 1}/{n_epochs}: loss {entry['train_loss']:.4f}, train cosine "
                    f"{entry['train_cosine']:.4f}" + (f", held-out cosine {entry['val_cosine']:.4f}"
                                                      if "val_cosine" in entry else ""))
                if "val_cosine" in entry and (best is None or entry["val_cosine"] > best["val_cosine"]):
                    best = {"epoch": epoch, "step": step, "val_cosine": entry["val_cosine"]}
                    save("best")
            if end_of_epoch or (save_every and step % save_every == 0) or \
                    (stop_after is not None and done_here >= stop_after):
                save("last")
    bar.close()
    finished = step >= total
    rec = record_of("finished" if finished else "paused")
    if finished:
        src = ck.checkpoint_dir(out, "best") if best is not None else None
        ck.publish(out, src or ck.checkpoint_dir(out, "last"))
        manifest = json.loads((out / "manifest.json").read_text())
        manifest.update({"source": "bindkit distill", "distilled": record})
        _write_json(out / "manifest.json", manifest)
        rec["published"] = f"best (epoch {best['epoch'] + 1}, step {best['step']})" if best else "last"
        rec["fingerprints"] = {m: info.get("fingerprint") for m, info in manifest["files"].items()}
    _write_json(out / RECORD_FILE, rec)
    say(f"{'finished' if finished else 'paused'} at step {step}/{total}: {out}"
        + ("" if finished else " (continue with --resume)"))
    return DistillResult(out=out, step=step, total_steps=total, finished=finished, history=history, best=best,
                         cache={"path": str(tcache.root), **fill}, record=rec)


def _adamw(groups: list[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (betas 0.9, 0.95, as ``bindkit train``), fused where PyTorch offers it: a student's token table
    is most of its parameters, and the fused update of it is ~8x faster on a CPU."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, TypeError, ValueError):  # an older PyTorch or another device: the plain update
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-6)


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


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


__all__ = ["DistillResult", "Items", "distill", "held_out_cosine"]
