"""Text loader: strings -> CLIP BPE token ids (context 77, int64), with open_clip's tokenizer.

open_clip ships the same BPE vocabulary as the reference (``bpe_simple_vocab_16e6.txt.gz``) and cleans text the
same way (ftfy, HTML unescape, whitespace collapse, lower case). Sequences longer than the context are cut and
still end with the end-of-text token 49407; shorter ones are zero-padded. With ``tokenizer="open_clip"`` (cards
whose text encoder comes from open_clip) the ids are ``open_clip.get_tokenizer(open_clip_model)``'s.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

import torch

from ..openclip import tokenizer as open_clip_tokenizer
from .sources import Source

DEFAULTS: dict[str, Any] = {"tokenizer": "clip_bpe", "context_length": 77}

_lock = threading.Lock()
_tokenizer = None


def shape(p: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one tokenised text: (context_length,)."""
    return (int(p["context_length"]),)


def validate(p: dict[str, Any]) -> None:
    """Raise ValueError for option values this loader cannot use."""
    if p["tokenizer"] not in ("clip_bpe", "open_clip"):
        raise ValueError(f"unknown tokenizer {p['tokenizer']!r}; bindkit has 'clip_bpe' (open_clip's CLIP BPE) and "
                         "'open_clip' (open_clip.get_tokenizer of the model named by open_clip_model)")
    if p["tokenizer"] == "open_clip" and not p.get("open_clip_model"):
        raise ValueError("tokenizer 'open_clip' needs open_clip_model (the open_clip model whose tokenizer to use)")
    if int(p["context_length"]) < 2:
        raise ValueError(f"context_length must be at least 2, got {p['context_length']!r}")


def _simple_tokenizer_class() -> Any:
    """open_clip's ``SimpleTokenizer``, loaded from its own file without running ``open_clip/__init__`` (which
    imports every open_clip model, timm and huggingface_hub: ~6 s of a one-off ``bindkit search``). The module
    needs only ftfy, regex, numpy and torch, and finds its vocabulary beside its file. Falls back to the plain
    import when open_clip's layout differs."""
    import importlib.util
    import sys

    if "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.tokenizer"].SimpleTokenizer
    try:
        package = importlib.util.find_spec("open_clip")  # locates the package without importing it
        spec = importlib.util.spec_from_file_location(
            "bindkit._open_clip_tokenizer", os.path.join(package.submodule_search_locations[0], "tokenizer.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.SimpleTokenizer
    except Exception:  # noqa: BLE001 - any surprise: the ordinary (slow) import
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer


def _get_tokenizer():
    global _tokenizer
    with _lock:  # building it reads the 1.3 MB vocabulary; do it once even when threads race
        if _tokenizer is None:
            _tokenizer = _simple_tokenizer_class()()
    return _tokenizer


def check_text(item: Any, index: int) -> str:
    """``item`` if it is a string; InputError otherwise (text items are strings, never paths)."""
    if isinstance(item, str):
        return item
    raise Source(f"#{index}", "text").fail(
        f"text items must be str, got {type(item).__name__}; to embed a text file, read it first "
        "(the `bindkit embed` command does that for .txt files)"
    )


def tokenize(texts: Sequence[str], p: dict[str, Any] | None = None) -> torch.Tensor:
    """Token ids, int64 tensor (len(texts), context_length). Empty strings give [49406, 49407, 0, ...]."""
    p = p or DEFAULTS
    if p["tokenizer"] == "open_clip":
        return open_clip_tokenizer(p)(list(texts)).long()
    return _get_tokenizer()(list(texts), context_length=int(p["context_length"])).long()


def load(item: Any, p: dict[str, Any], index: int = 0) -> torch.Tensor:
    """One string -> int64 tensor (context_length,)."""
    return tokenize([check_text(item, index)], p)[0]
