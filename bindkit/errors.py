"""Error types raised by bindkit. Every message names the item and says how to fix it."""

from __future__ import annotations


class BindkitError(Exception):
    """Base class of every error bindkit raises on purpose."""


class CardError(BindkitError, ValueError):
    """An encoder card could not be found, parsed or validated."""


class CheckpointError(BindkitError, ValueError):
    """A checkpoint is unreadable, truncated, or does not match the architecture."""


class WeightsNotFoundError(CheckpointError, FileNotFoundError):
    """No local weights for a card; the message carries the command that fetches them."""


class WeightsIntegrityError(CheckpointError):
    """A weights file whose content does not match the sha256 its model directory's ``manifest.json`` records
    (a damaged copy, a bit flip, an edit after the manifest was written). The message names the file and says
    how to get a good copy; ``bindkit verify MODEL`` checks every file."""


class ModalityError(BindkitError, ValueError):
    """An unknown modality name, or one the model was not built with."""


class InputError(BindkitError, ValueError):
    """An input item could not be loaded or has the wrong shape.

    Attributes:
        item: the path, or ``"#<index>"`` for in-memory items.
        modality: the modality it was loaded as.
        reason: what was wrong, in words.
    """

    def __init__(self, item: object, modality: str, reason: str):
        self.item = item
        self.modality = modality
        self.reason = reason
        super().__init__(f"{modality} input {item}: {reason}")


class IndexStoreError(BindkitError, RuntimeError):
    """An index directory is missing, corrupt, or was built with another model."""


class ReadOnlyIndexError(IndexStoreError):
    """A write to an index that is open read-only (``read_only=True``, ``mmap=True``, or a folder, file or medium
    this process cannot write)."""


class ModelRefusedError(IndexStoreError):
    """The model given may not add vectors to this index, whatever the items: it computes another variant (fp32,
    int8 or bf16) of the index's vectors, or it is a distilled student of the index's model. Raised before
    anything is embedded; the message says which model to add with."""


class StudentModelError(ModelRefusedError):
    """A distilled student (``bindkit distill``) used where only its teacher will do: adding items to the
    teacher's index (a student's vectors only approximate the teacher's), or a query of a modality the student
    does not serve. Search the index with the student; add items with the teacher."""


class StorageFullError(IndexStoreError):
    """A write to an index ran out of space (ENOSPC, a quota, or a file-size limit); the message names the path
    and about how much space it needed. Nothing is half-written: free space and run the command again."""


class DeviceError(BindkitError, ValueError):
    """A torch device name that is malformed or not available on this machine."""


class ArgumentError(BindkitError, ValueError):
    """A Python API argument with the right type but an unusable value (``k=-1``, an id out of range)."""


class ArgumentTypeError(BindkitError, TypeError):
    """A Python API argument of the wrong type (``k="5"``, ``modalities=5``, ``model=None``)."""


class IndexClosedError(IndexStoreError, ValueError):
    """A method was called on an ``Index`` after ``close()`` (like I/O on a closed file, a ValueError)."""



class ManifestError(BindkitError, ValueError):
    """A pair manifest cannot be used: unreadable, wrong columns, no rows, too many bad rows, empty split."""


class EvalError(BindkitError, ValueError):
    """A test file, class list or template that cannot be used (said before any model runs)."""


class DistillError(BindkitError, ValueError):
    """Distillation cannot start: an unusable data source, too few items, or a student that cannot serve the
    teacher's space (the message says what to change)."""



class DatasetError(BindkitError, ValueError):
    """The output folder cannot be used, or the counts or parameters are invalid."""


def describe_exc(exc: BaseException, with_type: bool = True) -> str:
    """``"TypeName: first line of the message"`` (or the first line alone), to quote a library's complaint
    inside one of our messages instead of showing its stack trace."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]


class FilterError(BindkitError, ValueError):
    """A ``where`` filter that does not follow the grammar or is over a limit; the message says what was
    expected."""


class DecodeLimitError(InputError):
    """Decoding an item passed a bound of the active :class:`DecodeBudget`.

    Attributes (besides InputError's):
        limit: which bound: ``"bytes"``, ``"audio_seconds"`` or ``"pixels"``.
        value: the value reached when decoding stopped (bytes, seconds or pixels); decoding stops as soon as
            the bound is passed, so for durations it is a lower bound ("at least").
        allowed: the bound.
    """

    def __init__(self, item: object, modality: str, reason: str, limit: str, value: float, allowed: float):
        super().__init__(item, modality, reason)
        self.limit = limit
        self.value = value
        self.allowed = allowed


class DistillArgumentError(ArgumentError, DistillError):
    """A bad argument of :func:`bindkit.distill`: an :class:`~bindkit.errors.ArgumentError` (the convention for
    bad arguments) that is still the :class:`DistillError` it used to be."""


class TableError(ValueError):
    """A table that cannot be read. ``line``: the line (or Parquet row) at fault, None for the whole file;
    ``reason``: what is wrong, in words."""

    def __init__(self, reason: str, line: int | None = None):
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


class CsvRowError(ValueError):
    """A row the csv module cannot parse; ``line`` is the line the row starts on, ``reason`` what is wrong."""

    def __init__(self, line: int, reason: str):
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")
