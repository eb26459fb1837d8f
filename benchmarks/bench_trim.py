"""Exact text trimming on imagebind_huge's text encoder (random weights: speed does not depend on values).

A batch of real captions (6-20 tokens with start and end of text, tokenized by bindkit) through the text encoder:

* ``full 77``   — every row runs all 77 positions (trimming off): the reference computation;
* ``trimmed``   — the batch cut to its last end-of-text position (one call of 32 x max length);
* ``buckets``   — the rows sorted by length and cut into the two length buckets that minimise rows x length
  (two calls), to compare with packing;
* ``packed``    — each row keeps only its own positions, packed into one call (attention alone runs padded apart);
* ``packed+last`` — bindkit's default: packed, and the last block runs for the pooled end-of-text tokens alone (keys
  and values for every position, the query, output projection and MLP for one token per text);
* ``int8 ...``  — the same on the dynamic-int8 encoder (``load_model(quantize="int8")``).

Variants take turns within each round (interleaved, the order reversed every other round), so the ratios are
fair on a shared machine; quote ratios, not absolute figures. Every variant's max |difference| to ``full 77``
is printed (trimming is exact: fp32 within 1e-6).
A variant's speed-up is taken round by round (its time against ``full 77``'s in the same round) and the median
over rounds is quoted, with the range.

Usage: python benchmarks/bench_trim.py [--quick] [--rounds 5] [--batch 32] [--card imagebind_huge] [--no-int8]
       [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bindkit  # noqa: E402
from bindkit.models.quantize import quantize_model  # noqa: E402

#: COCO-style captions: 6..20 tokens each once tokenized (start and end of text included).
CAPTIONS = [
    "a dog running on the beach",
    "a man riding a wave on top of a surfboard",
    "two cats sleeping on a red couch",
    "a plate of food with broccoli and rice",
    "a red double decker bus driving down a city street",
    "a group of people standing around a kitchen preparing food together",
    "an airplane flying over a snowy mountain range on a clear day",
    "a bowl of fruit",
    "a little girl holding a pink umbrella in the rain",
    "a train pulling into a station at night",
    "a herd of elephants walking across a dry grassy field",
    "a black and white photo of an old bicycle leaning against a brick wall",
    "a pizza with cheese and tomatoes on a wooden table",
    "a giraffe eating leaves from a tall tree",
    "people skiing down a steep snowy slope",
    "a woman talking on a cell phone while walking her dog in the park",
    "a bathroom with a white sink and a mirror",
    "a cup of coffee next to a laptop",
    "a street sign at the corner of two busy roads",
    "a young boy swinging a baseball bat at a ball",
    "a sailboat on a calm lake at sunset",
    "a kitchen with stainless steel appliances and granite counter tops",
    "a teddy bear sitting on a bed",
    "a horse grazing in a green pasture next to a white fence",
    "a close up of a sandwich cut in half",
    "a person flying a kite on a windy hill",
    "a laptop computer on top of a desk next to a lamp and a stack of books",
    "a woman in a red coat walking her two dogs along a snowy path in the park",
    "an orange cat looking out of a window",
    "a motorcycle parked on the side of a road",
    "a flock of birds flying over the ocean",
    "children playing soccer on a field after school",
    "a clock tower in the middle of a town square",
    "a zebra standing in tall grass",
    "a table set for dinner with candles and wine glasses",
    "a skateboarder doing a trick on a ramp",
    "a vase of yellow flowers on a windowsill",
    "a fire hydrant",
    "a couple sitting on a bench looking at the river",
    "a bunch of bananas hanging from a tree",
    "a snowboarder jumping off a ledge in the mountains under a bright blue sky",
]


def caption_batch(card: str, n: int, seed: int = 0, lengths: tuple[int, int] = (6, 20)) -> torch.Tensor:
    """``n`` captions of ``lengths`` tokens from :data:`CAPTIONS`, tokenized for ``card``: the longest one (so the
    batch spans the range; trimming alone is bound by it) and ``n - 1`` drawn at random (with replacement when
    ``n`` is larger than the list), shuffled."""
    ids = bindkit.preprocess("text", CAPTIONS, card=card)
    n_tokens = ids.argmax(-1) + 1
    keep = ids[(n_tokens >= lengths[0]) & (n_tokens <= lengths[1])]
    longest = int((keep.argmax(-1)).argmax())
    rest = [i for i in range(len(keep)) if i != longest]
    rng = random.Random(seed)
    rows = [longest] + (rng.sample(rest, n - 1) if n - 1 <= len(rest) else rng.choices(rest, k=n - 1))
    rng.shuffle(rows)
    return keep[rows]


def two_buckets(lengths: list[int]) -> int:
    """Where to cut rows sorted by ``lengths`` into two buckets minimising sum(rows x bucket length)."""
    n = len(lengths)
    return min(range(1, n), key=lambda c: c * lengths[c - 1] + (n - c) * lengths[-1])


def variants(models: dict[str, Any], ids: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The computations to time, by name."""
    eot = ids.argmax(-1)
    order = torch.argsort(eot, stable=True)
    cut = two_buckets((eot[order] + 1).tolist())
    out: dict[str, Callable[[], torch.Tensor]] = {}

    def encode(model: Any, x: torch.Tensor, trim: bool, pack: bool, pool: bool = False) -> torch.Tensor:
        enc = model.encoders["text"]
        enc.trim_text, enc.pack_text, enc.pool_last_block = trim, pack, pool
        return model.encode("text", x)

    def buckets(model: Any) -> torch.Tensor:
        res = torch.empty(len(ids), model.dim)
        for rows in (order[:cut], order[cut:]):
            res[rows] = encode(model, ids[rows], True, False)
        return res

    for engine, model in models.items():
        prefix = "" if engine == "fp32" else "int8 "
        out[prefix + "full 77"] = lambda m=model: encode(m, ids, False, False)
        if engine == "fp32":
            out["trimmed"] = lambda m=model: encode(m, ids, True, False)
            out["buckets"] = lambda m=model: buckets(m)
        out[prefix + "packed"] = lambda m=model: encode(m, ids, True, True)
        out[prefix + "packed+last"] = lambda m=model: encode(m, ids, True, True, True)
    return out


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each call of each function over ``rounds`` rounds after one warm-up each. The functions take
    turns, in reverse order every other round (A B C, C B A, ...) so a load that drifts within a round weighs
    on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        names = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for name in names:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
        print(f"[trim] round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--card", default="imagebind_huge")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 variants")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's); 1 avoids thread-sync stalls on an oversubscribed machine")
    ap.add_argument("--quick", action="store_true", help="1 round, no int8 (a smoke test; ratios are noisier)")
    args = ap.parse_args()
    rounds, int8 = (1, False) if args.quick else (args.rounds, not args.no_int8)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    t = time.perf_counter()
    torch.manual_seed(0)
    model = bindkit.build_model(args.card, modalities=["text"])
    models = {"fp32": model}
    if int8:
        models["int8"] = quantize_model(copy.deepcopy(model))
    print(f"[trim] built {args.card} text encoder{' + int8 copy' if int8 else ''} in "
          f"{time.perf_counter() - t:.1f} s ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params)")

    ids = caption_batch(args.card, args.batch)
    lengths = sorted((ids.argmax(-1) + 1).tolist())
    cut = two_buckets(lengths)
    full = ids.shape[0] * ids.shape[1]
    print(f"[trim] batch {len(ids)} captions of {lengths[0]}..{lengths[-1]} tokens (mean {sum(lengths) / len(lengths):.1f})"
          f" of {ids.shape[1]}; positions run: full {full}, trimmed {len(ids) * lengths[-1]}, buckets "
          f"{cut}x{lengths[cut - 1]} + {len(ids) - cut}x{lengths[-1]} = {cut * lengths[cut - 1] + (len(ids) - cut) * lengths[-1]},"
          f" packed {sum(lengths)}")

    fns = variants(models, ids)
    with torch.inference_mode():
        outs = {name: fn() for name, fn in fns.items()}
        times = interleaved(fns, rounds)
    base = times["full 77"]
    print(f"[trim] speed-up = fp32 full 77 time / variant time in the same round; median (min..max) over {rounds} "
          "rounds")
    for name, ts in times.items():
        vs = "int8 full 77" if name.startswith("int8") else "full 77"
        diff = (outs[name] - outs[vs]).abs().max().item()
        ratios = [b / t for b, t in zip(base, ts)]
        print(f"[trim] {name:17}: {len(ids) / statistics.median(ts):7.2f} texts/s  "
              f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}..{max(ratios):.2f})   "
              f"max |diff| to {vs} {diff:.1e}")
    if int8:
        cos = (outs["int8 packed"] * outs["full 77"]).sum(-1)
        print(f"[trim] int8 packed vs fp32 full 77: cosine min {cos.min().item():.5f} mean {cos.mean().item():.5f}")


if __name__ == "__main__":
    main()
