"""Text Generation Inference: its memory model, its official image, and the flags a plan sets."""

from __future__ import annotations

from vramgate.sizing.catalog import GpuType
from vramgate.sizing.engines.base import (
    TORCH_DTYPE_NAMES,
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
    PlanFlags,
    Scheduling,
    format_fraction,
)

FLAGS = PlanFlags(
    model="--model-id",
    tensor_parallel="--num-shard",
    pipeline_parallel=None,
    max_model_len="--max-total-tokens",
    max_input_tokens="--max-input-tokens",
    max_num_seqs="--max-concurrent-requests",
    memory_fraction="--cuda-memory-fraction",
    dtype="--dtype",
    kv_cache_dtype="--kv-cache-dtype",
    quantization="--quantize",
    max_num_batched_tokens="--max-batch-prefill-tokens",
    block_size=None,
)
RUNTIME = EngineRuntime(
    image="ghcr.io/huggingface/text-generation-inference:3.3.5",
    repositories=("ghcr.io/huggingface/text-generation-inference", "huggingface/text-generation-inference"),
    command=(),
    port=80,
    port_flag="--port",
    host_flag=None,
)


class TgiModel(EngineModel):
    """Text Generation Inference: `--cuda-memory-fraction` caps the process; KV blocks fill what warm-up
    leaves, less a 2% wiggle room. Warm-up runs `--max-batch-prefill-tokens` (4096 by default)."""

    engine = Engine.TGI
    sliding_window_paged = False

    def default_scheduling(self, cuda_total_bytes: int, gpu: GpuType, max_model_len: int) -> Scheduling:
        return Scheduling(max_num_seqs=128, max_num_batched_tokens=4096, block_size_tokens=16)

    def usable_bytes(self, cuda_total_bytes: int, fraction: float) -> int:
        return int(cuda_total_bytes * fraction * 0.98)

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"{FLAGS.model}={launch.model}",
            f"{FLAGS.tensor_parallel}={launch.tensor_parallel}",
            f"{FLAGS.max_model_len}={launch.max_model_len}",
            f"{FLAGS.max_input_tokens}={max(1, launch.max_model_len - 1)}",
            f"{FLAGS.max_num_seqs}={launch.max_num_seqs}",
            f"{FLAGS.memory_fraction}={format_fraction(launch.memory_fraction)}",
            f"{FLAGS.dtype}={TORCH_DTYPE_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.kv_cache_fp8:
            args.append(f"{FLAGS.kv_cache_dtype}=fp8_e4m3fn")
        quant = launch.weights.quantization
        if quant is not None and quant.method in ("fp8", "gptq", "awq", "bitsandbytes"):
            args.append(f"{FLAGS.quantization}={quant.method}")
        if launch.max_num_batched_tokens is not None:
            args.append(f"{FLAGS.max_num_batched_tokens}={launch.max_num_batched_tokens}")
        return args


def _model(build: EngineBuild, gpu: GpuType | None) -> EngineModel:
    return TgiModel()


DEFINITION = EngineDefinition(Engine.TGI, "TGI", RUNTIME, FLAGS, _model)
