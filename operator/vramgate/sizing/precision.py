"""Numeric formats of weights and KV cache, and what a quantized checkpoint costs per weight."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Precision(StrEnum):
    """Weight precision a deployment asks for. `auto` means: what the checkpoint is stored in."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


class KvCacheDtype(StrEnum):
    """KV-cache element type, independent of the weights. `auto` follows the compute dtype."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"


DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}

# config.json spells dtypes the torch way.
_TORCH_DTYPE_NAMES = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
}


def normalize_torch_dtype(name: str | None) -> str:
    """`torch_dtype` from config.json as one of fp32/bf16/fp16 (checkpoints without one are fp16)."""
    if name is None:
        return "fp16"
    return _TORCH_DTYPE_NAMES.get(name.lower().removeprefix("torch."), "bf16")


@dataclass(frozen=True)
class Quantization:
    """How a checkpoint's quantized linear weights are stored.

    Group-wise formats (GPTQ, AWQ, MXFP4) carry a scale (and for GPTQ/AWQ a zero point) per group of
    `group_size` weights along the input dimension: that is the "real extra" over bits/8 per weight.
    `experts_only` marks formats that quantize just the MoE experts (gpt-oss's MXFP4): attention,
    router, embeddings and lm_head stay in the 16-bit compute dtype.
    """

    method: str
    bits: int
    group_size: int | None = None
    scale_bytes: float = 2.0
    zero_point_bits: int = 0
    experts_only: bool = False
    symmetric: bool = False  # the checkpoint's zero points are all the midpoint (GPTQ's sym)

    def bytes_per_weight(self) -> float:
        """Average bytes of one quantized weight including its share of scales and zero points."""
        per_weight = self.bits / 8
        if self.group_size:
            per_weight += (self.scale_bytes + self.zero_point_bits / 8) / self.group_size
        return per_weight

    @property
    def precision(self) -> Precision:
        """The plain precision this format is closest to (what a user would call it)."""
        return {4: Precision.INT4, 8: Precision.FP8 if self.method == "fp8" else Precision.INT8}.get(
            self.bits, Precision.INT4
        )


def quantization_for_precision(precision: Precision) -> Quantization | None:
    """The storage vramgate assumes when a user asks a 16-bit model to run at a lower precision.

    fp8: vLLM/SGLang quantize on load, one byte per weight with per-channel scales.
    int8: a W8A8 checkpoint with per-channel scales. int4: a GPTQ/AWQ-style checkpoint with group size 128.
    """
    if precision is Precision.FP8:
        return Quantization(method="fp8", bits=8)
    if precision is Precision.INT8:
        return Quantization(method="int8", bits=8)
    if precision is Precision.INT4:
        return Quantization(method="gptq", bits=4, group_size=128, zero_point_bits=4)
    return None
