"""Model architecture: stems, transformer trunk, heads, and the BindModel container."""

from .encoder import BindModel, Encoder, encoder_fingerprint, reference_fingerprint, tensor_fingerprint

__all__ = ["BindModel", "Encoder", "encoder_fingerprint", "reference_fingerprint", "tensor_fingerprint"]
