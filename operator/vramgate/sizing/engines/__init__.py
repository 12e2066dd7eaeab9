"""The serving engines vramgate sizes, one module each (`engines/<name>.py`).

Each module holds everything engine-specific as data next to its code: the memory model and its release
table, the official image and how it is started and probed, and the spellings of the flags a plan sets.
The `Engine` enum is the registry: its value names the module, so adding an engine is one module and one
enum line. The rest of vramgate (arguments, manifests, the resource schema) reads engines only from here.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import import_module

from vramgate.sizing.catalog import ASSUMED_SM_COUNT, GpuType
from vramgate.sizing.engines.base import (
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    FreeMemoryRule,
    Launch,
    Overhead,
    OverheadCurve,
    PlanFlags,
    Scheduling,
)
from vramgate.sizing.units import GIB


@cache
def definition(engine: Engine) -> EngineDefinition:
    """Everything vramgate knows about `engine`, from its module."""
    found = import_module(f"{__name__}.{engine.value}").DEFINITION
    if not isinstance(found, EngineDefinition) or found.engine is not engine:
        raise TypeError(f"{__name__}.{engine.value}.DEFINITION must be the EngineDefinition of {engine}")
    return found


def engine_model(engine: Engine, build: EngineBuild | None = None, gpu: GpuType | None = None) -> EngineModel:
    """The memory model of `engine` as `build` runs it on `gpu` (which release runs can depend on the GPU).

    Models are immutable once made and shared: a planner asks for one per GPU type and plan."""
    if gpu is None:
        return _model(engine, build or EngineBuild(), None, ASSUMED_SM_COUNT, EngineModel.cuda_context_bytes)
    return _model(
        engine,
        build or EngineBuild(),
        gpu.compute_capability_major,
        gpu.multiprocessors,
        gpu.cuda_context_bytes,
    )


# Safety margin for tensor parallelism on NVSwitch-class GPUs (Hopper and later): NCCL's own buffers
# (NVLink SHARP, symmetric memory) depend on the NCCL build and the topology, not on the engine's source.
# Public vLLM 0.19 logs on H100 show 2.06-2.21 GiB of non-torch memory at TP 2-4 against 0.24-0.27 GiB at
# TP 1 (calibration rows R63, R64, R70, R71, R73, R76, R79, R80); older H100 logs show less (R24: 0.54).
# The plan reserves enough that, with the 0.13 GiB it counts at TP 1, it covers the largest total seen
# (R79: 2.21 GiB), so it never counts on memory NCCL may hold.
NVSWITCH_TENSOR_PARALLEL_NON_TORCH_BYTES = round(2.1 * GIB)
NVSWITCH_COMPUTE_CAPABILITY = 9


@lru_cache(maxsize=1024)
def _model(
    engine: Engine,
    build: EngineBuild,
    compute_capability_major: int | None,
    sm_count: int,
    cuda_context_bytes: int,
) -> EngineModel:
    model = definition(engine).model(build, compute_capability_major)
    model.sm_count = sm_count
    model.set_cuda_context(cuda_context_bytes)
    if compute_capability_major is None or compute_capability_major >= NVSWITCH_COMPUTE_CAPABILITY:
        model.non_torch_bytes_tensor_parallel = NVSWITCH_TENSOR_PARALLEL_NON_TORCH_BYTES
    return model


__all__ = [
    "Engine",
    "EngineBuild",
    "EngineDefinition",
    "EngineModel",
    "EngineRuntime",
    "FreeMemoryRule",
    "Launch",
    "Overhead",
    "OverheadCurve",
    "PlanFlags",
    "Scheduling",
    "definition",
    "engine_model",
]
