"""What a LoRA run adapts: rank, alpha, target projections and whether the heads train (no torch import, so
``bindkit train --lora`` can check its argument before anything heavy is loaded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import ArgumentError

#: LoRA target name -> suffix of the module path inside a trunk block.
TARGETS: dict[str, str] = {"qkv": "attn.qkv", "out": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
DEFAULT_TARGETS = ("qkv", "out", "fc1", "fc2")
#: The extra target that trains each adapted encoder's head (LayerNorm + projection) fully.
HEAD = "head"


def parse_targets(targets: Iterable[str] | str) -> tuple[str, ...]:
    """``"qkv,fc2"`` or ``["qkv", "fc2"]`` -> ("qkv", "fc2"), in the order given; ArgumentError for an unknown
    or empty list (``head`` is not a projection target: see :class:`LoRASpec`)."""
    if isinstance(targets, str):
        targets = targets.split(",")
    out = tuple(dict.fromkeys(t.strip() for t in targets if t.strip()))
    bad = [t for t in out if t not in TARGETS]
    if bad:
        raise ArgumentError(f"unknown LoRA target(s) {', '.join(map(repr, bad))}; choose among {', '.join(TARGETS)}"
                            + (f" ({HEAD} goes with --lora targets=..., not apply_lora)" if HEAD in bad else ""))
    if not out:
        raise ArgumentError(f"no LoRA target: choose at least one projection among {', '.join(TARGETS)} "
                            f"({HEAD} alone is not an adapter)")
    return out


@dataclass(frozen=True)
class LoRASpec:
    """LoRA hyper-parameters of a run: ``r`` (rank), ``alpha`` (the update is scaled by alpha / r), ``targets``
    (projections of every trunk block: qkv, out, fc1, fc2) and ``head`` (also train the adapted encoders' heads
    fully; they are then stored in the adapter files)."""

    r: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = field(default=DEFAULT_TARGETS)
    head: bool = False

    def __post_init__(self) -> None:
        try:
            r, alpha = int(self.r), float(self.alpha)
        except (TypeError, ValueError):
            raise ArgumentError(f"LoRA rank and alpha must be numbers, got r={self.r!r}, "
                                f"alpha={self.alpha!r}") from None
        if r < 1 or r != float(self.r) or not alpha > 0:
            raise ArgumentError(f"LoRA needs an integer rank >= 1 and alpha > 0, got r={self.r}, alpha={self.alpha}")
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "targets", parse_targets(self.targets))
        object.__setattr__(self, "head", bool(self.head))

    def __str__(self) -> str:
        targets = [t for t in DEFAULT_TARGETS if t in self.targets] + ([HEAD] if self.head else [])
        return f"r={self.r},alpha={self.alpha:g},targets={','.join(targets)}"

    def to_dict(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "targets": [t for t in DEFAULT_TARGETS if t in self.targets],
                "head": self.head}


def parse_lora_spec(spec: "str | Mapping[str, Any] | LoRASpec | bool | None") -> LoRASpec:
    """A :class:`LoRASpec` from ``bindkit train --lora``'s text, a dict, a LoRASpec, or True/"" (defaults).

    Text: comma-separated ``key=value`` with keys ``r`` (or ``rank``), ``alpha`` and ``targets``; the names after
    ``targets=`` run to the next ``key=``, and ``head`` among them trains the heads too:
    ``r=8,alpha=16,targets=qkv,out,fc1,fc2,head``. Omitted keys keep their defaults (r=8, alpha=16, all four
    projections, no head).

    Raises:
        ArgumentError: an unknown key or target, or a bad number.
    """
    if isinstance(spec, LoRASpec):
        return spec
    if spec is None or spec is True or (isinstance(spec, str) and not spec.strip()):
        return LoRASpec()
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"r", "rank", "alpha", "targets", "head"})
        if unknown:
            raise ArgumentError(f"unknown LoRA setting(s) {', '.join(unknown)}; use r, alpha, targets, head")
        targets = spec.get("targets", DEFAULT_TARGETS)
        targets = targets.split(",") if isinstance(targets, str) else list(targets)
        head = bool(spec.get("head", False)) or HEAD in targets
        return LoRASpec(spec.get("r", spec.get("rank", 8)), spec.get("alpha", 16.0),
                        tuple(t for t in targets if t != HEAD) or (), head)
    if not isinstance(spec, str):
        raise ArgumentError(f"lora= takes text like 'r=8,alpha=16,targets=qkv,out', a dict or a LoRASpec, "
                            f"not {type(spec).__name__}")
    values: dict[str, Any] = {}
    key = None
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if "=" in token:
            key, _, value = (s.strip() for s in token.partition("="))
            key = {"rank": "r"}.get(key, key)
            if key not in ("r", "alpha", "targets"):
                raise ArgumentError(f"unknown LoRA setting {key!r} in {spec!r}; use r=, alpha= and targets= "
                                    "(e.g. r=8,alpha=16,targets=qkv,out,fc1,fc2,head)")
            if key in values:
                raise ArgumentError(f"LoRA setting {key!r} given twice in {spec!r}")
            values[key] = [value] if key == "targets" else value
        elif key == "targets":
            values["targets"].append(token)
        else:
            raise ArgumentError(f"{token!r} in --lora {spec!r} is not key=value; only the names after targets= "
                                "may stand alone (r=8,alpha=16,targets=qkv,out,fc1,fc2,head)")
    try:
        r = int(values["r"]) if "r" in values else 8
        alpha = float(values["alpha"]) if "alpha" in values else 16.0
    except ValueError:
        raise ArgumentError(f"--lora {spec!r}: r must be an integer and alpha a number") from None
    return parse_lora_spec({"r": r, "alpha": alpha, "targets": values.get("targets", list(DEFAULT_TARGETS))})
