"""Model architecture: stems, transformer trunk, heads, and the BindModel container."""

from .encoder import BindModel, Encoder, tensor_fingerprint

__all__ = ["BindModel", "Encoder", "tensor_fingerprint"]
