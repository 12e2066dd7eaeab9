"""SGLang: its memory model, its official image, and the flags a plan sets."""

from __future__ import annotations

from vramgate.sizing.architecture import ModelArchitecture
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
from vramgate.sizing.engines.options import (
    LORA,
    SPECULATIVE,
    CommandLine,
    GovernedFlag,
    OptionSyntax,
    PlannedFlag,
)
from vramgate.sizing.units import GIB

FLAGS = PlanFlags(
    model="--model-path",
    tensor_parallel="--tp-size",
    pipeline_parallel="--pp-size",
    max_model_len="--context-length",
    max_input_tokens=None,
    max_num_seqs="--max-running-requests",
    memory_fraction="--mem-fraction-static",
    dtype="--dtype",
    kv_cache_dtype="--kv-cache-dtype",
    quantization="--quantization",
    max_num_batched_tokens="--chunked-prefill-size",
    block_size=None,
)
# Read from sglang/srt/server_args.py (ServerArgs.add_cli_args, prepare_server_args) of v0.5.3: a plain
# argparse parser, so prefixes count and `_` is no `-`.
COMMAND_LINE = CommandLine(
    syntax=OptionSyntax.ARGPARSE,
    source="SGLang v0.5.3: srt/server_args.py",
    governed=(
        GovernedFlag(("--model-path", "--model"), "set spec.model.name or spec.model.source instead"),
        GovernedFlag(("--context-length",), "set spec.workload.maxSequenceLength instead"),
        GovernedFlag(("--mem-fraction-static",), "set spec.gpu.maxMemoryFraction instead"),
        GovernedFlag(("--max-total-tokens",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--max-prefill-tokens",), "set runtime.extraArgs --chunked-prefill-size instead"),
        GovernedFlag(("--page-size",), "the plan sizes token pages of 1"),
        GovernedFlag(("--kv-cache-dtype",), "set spec.model.kvCacheDtype instead"),
        GovernedFlag(("--cpu-offload-gb",), "set spec.gpu instead (the plan keeps every weight on the GPUs)"),
        GovernedFlag(("--tensor-parallel-size", "--tp-size"), "set spec.gpu.count instead"),
        GovernedFlag(("--pipeline-parallel-size", "--pp-size"), "set spec.gpu.count instead"),
        GovernedFlag(("--data-parallel-size", "--dp-size"), "set spec.replicas instead"),
        GovernedFlag(("--expert-parallel-size", "--ep-size", "--ep"), "set spec.gpu.count instead"),
        GovernedFlag(("--enable-dp-attention",), "set spec.gpu.count instead"),
        GovernedFlag(("--nnodes",), "set spec.gpu.count instead (one pod, one node)"),
        GovernedFlag(("--quantization",), "set spec.model.precision instead"),
        GovernedFlag(("--dtype",), "set spec.model.precision instead"),
        GovernedFlag(("--cuda-graph-max-bs",), "set spec.workload.concurrency instead"),
        GovernedFlag(("--enable-lora", "--lora-paths", "--max-loras-per-batch"), LORA),
        GovernedFlag(("--speculative-algorithm", "--speculative-draft-model-path"), SPECULATIVE),
        GovernedFlag(("--port",), "set spec.runtime.port instead"),
        GovernedFlag(("--host",), "probes and the Service reach the server on every interface"),
        GovernedFlag(
            ("--config",), "set the spec's fields instead (a config file would set flags the plan owns)"
        ),
    ),
    planned=(
        PlannedFlag(("--chunked-prefill-size",), "max_num_batched_tokens"),
        PlannedFlag(("--max-running-requests",), "max_num_seqs"),
    ),
)
# SGLang listens on 127.0.0.1 unless told otherwise.
RUNTIME = EngineRuntime(
    image="lmsysorg/sglang:v0.5.3-cu129",
    repositories=("lmsysorg/sglang",),
    command=("python3", "-m", "sglang.launch_server"),
    port=30000,
    port_flag="--port",
    host_flag="--host",
)


class SglangModel(EngineModel):
    """SGLang: `--mem-fraction-static` x free memory at start holds weights and the KV pool.

    The pool is the free memory after loading less (1 - fraction) x the free memory measured once the CUDA
    context and the distributed groups are up (sglang/srt/model_executor/model_runner.py@v0.4.3.post4,
    profile_max_num_token and init_torch_distributed): no forward pass is profiled, so activations and
    CUDA graphs (`--cuda-graph-max-bs`) use what the fraction leaves and never shrink the pool. The
    tensor-parallel communicators (NCCL, custom all-reduce) are created in init_torch_distributed before
    that measure, so their buffers shrink the base the fraction applies to; every release to 0.5.23 keeps
    this order (srt/distributed/bootstrap.py@v0.5.23, measure_pre_model_load_memory: "Call after parallel
    initialization and before allocating model weights").
    Calibrated on R32 (RTX 3090): 0.21 GiB beyond the weights is taken before the pool; the pool is
    token-granular (page size 1).
    """

    engine = Engine.SGLANG
    default_block_size = 1
    non_torch_bytes = round(0.21 * GIB)
    activation_inside_fraction = False
    sliding_window_paged = False
    tensor_parallel_buffers_in_baseline = True

    def usable_bytes(self, cuda_total_bytes: int, fraction: float, tensor_parallel: int = 1) -> int:
        baseline = (
            cuda_total_bytes - self.cuda_context_bytes - self.tensor_parallel_buffer_bytes(tensor_parallel)
        )
        return int(baseline * fraction)

    def default_scheduling(
        self,
        cuda_total_bytes: int,
        gpu: GpuType,
        max_model_len: int,
        arch: ModelArchitecture | None = None,
        tensor_parallel: int = 1,
        fraction: float = 1.0,
    ) -> Scheduling:
        return Scheduling(max_num_seqs=256, max_num_batched_tokens=8192, block_size_tokens=1)

    def arguments(self, launch: Launch) -> list[str]:
        args = [
            f"{FLAGS.model}={launch.model}",
            f"{FLAGS.tensor_parallel}={launch.tensor_parallel}",
            f"{FLAGS.max_model_len}={launch.max_model_len}",
            f"{FLAGS.max_num_seqs}={launch.max_num_seqs}",
            f"{FLAGS.memory_fraction}={format_fraction(launch.memory_fraction)}",
            f"{FLAGS.dtype}={TORCH_DTYPE_NAMES[launch.weights.compute_dtype]}",
        ]
        if launch.pipeline_parallel > 1:
            args.append(f"{FLAGS.pipeline_parallel}={launch.pipeline_parallel}")
        if launch.kv_cache_fp8:
            args.append(f"{FLAGS.kv_cache_dtype}=fp8_e4m3")
        quant = launch.weights.quantization
        if quant is not None and quant.method == "fp8":
            args.append(f"{FLAGS.quantization}=fp8")
        if launch.max_num_batched_tokens is not None:
            args.append(f"{FLAGS.max_num_batched_tokens}={launch.max_num_batched_tokens}")
        return args


def _model(build: EngineBuild, compute_capability_major: int | None) -> EngineModel:
    return SglangModel()


DEFINITION = EngineDefinition(Engine.SGLANG, "SGLang", RUNTIME, FLAGS, _model, COMMAND_LINE)
