"""Model architecture: stems, transformer trunk, heads, and the BindModel container."""

from .encoder import BindModel, Encoder, reference_fingerprint, tensor_fingerprint

__all__ = ["BindModel", "Encoder", "reference_fingerprint", "tensor_fingerprint"]
