"""bindkit: six modalities in one embedding space (ImageBind-compatible), with loaders, FAISS indexes and tools.

The public API on one page::

    model = bindkit.load_model("imagebind_huge", modalities=["image", "text"])
    vecs = model.embed(image=["dog.jpg"], text=["a dog"])          # unit-norm float32 numpy arrays
    batch = bindkit.preprocess("image", ["dog.jpg"], card=model.card)
    v = model.encode("image", batch)                                # (N, 1024) unit vectors
    index = bindkit.Index.create("my_index", model=model)
    bindkit.train("image_text.csv", "m1", card="bindkit_small")       # train your own (bindkit.load_model("m1"))
    bindkit.list_models()                                           # every card and model bindkit can see
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cards import Card, add_card_path, list_encoders, load_card
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    BindkitError,
    CardError,
    CheckpointError,
    CsvRowError,
    DecodeLimitError,
    DatasetError,
    DeviceError,
    DistillArgumentError,
    DistillError,
    EvalError,
    FilterError,
    IndexClosedError,
    IndexStoreError,
    InputError,
    ManifestError,
    ModalityError,
    ModelRefusedError,
    ReadOnlyIndexError,
    StorageFullError,
    StudentModelError,
    TableError,
    WeightsIntegrityError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__ below
    from .catalog import ModelInfo, list_models
    from .factory import auto_device, build_model, load_model
    from .index import Hit, Index
    from .inputs.batch import Embeddings, ItemError, preprocess
    from .models import BindModel
    from .weights import convert, fetch_weights

__version__ = "0.1.0"

# Lazily imported parts (they pull in heavier dependencies: torch, FAISS, PyAV, the tokenizer), so that
# `import bindkit` and `bindkit --help` stay fast; `bindkit.load_model` etc. import them on first use.
_LAZY = {
    "auto_device": ("bindkit.factory", "auto_device"),
    "build_model": ("bindkit.factory", "build_model"),
    "load_model": ("bindkit.factory", "load_model"),
    "BindModel": ("bindkit.models", "BindModel"),
    "preprocess": ("bindkit.inputs.batch", "preprocess"),
    "Embeddings": ("bindkit.inputs.batch", "Embeddings"),
    "ItemError": ("bindkit.inputs.batch", "ItemError"),
    "Index": ("bindkit.index", "Index"),
    "Hit": ("bindkit.index", "Hit"),
    "convert": ("bindkit.weights", "convert"),
    "fetch_weights": ("bindkit.weights", "fetch_weights"),
    "list_models": ("bindkit.catalog", "list_models"),
    "ModelInfo": ("bindkit.catalog", "ModelInfo"),
    "train": ("bindkit.train", None),  # the package, callable as bindkit.train(...) (see bindkit.train)
    "distill": ("bindkit.distill", None),  # the package, callable as bindkit.distill(...) (see bindkit.distill)
}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        value = value if attr is None else getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bindkit' has no attribute {name!r}")


__all__ = [
    "ArgumentError", "ArgumentTypeError", "BindModel", "BindkitError", "Card", "CardError", "CheckpointError",
    "CsvRowError", "DatasetError", "DecodeLimitError", "DeviceError", "DistillArgumentError", "DistillError",
    "Embeddings", "EvalError", "FilterError", "Hit", "Index", "IndexClosedError", "IndexStoreError", "InputError",
    "ItemError", "ManifestError", "ModalityError", "ModelInfo", "ModelRefusedError", "ReadOnlyIndexError",
    "StorageFullError", "StudentModelError", "TableError", "WeightsIntegrityError", "WeightsNotFoundError",
    "add_card_path", "auto_device", "build_model", "convert", "distill", "fetch_weights", "list_encoders",
    "list_models", "load_card", "load_model", "preprocess", "train",
]
