"""The serving engines vramgate sizes, one module each (`engines/<name>.py`).

Each module holds everything engine-specific as data next to its code: the memory model and its release
table, the official image and how it is started and probed, and the spellings of the flags a plan sets.
The `Engine` enum is the registry: its value names the module, so adding an engine is one module and one
enum line. The rest of vramgate (arguments, manifests, the resource schema) reads engines only from here.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import import_module

from vramgate.sizing.catalog import GpuType
from vramgate.sizing.engines.base import (
    Engine,
    EngineBuild,
    EngineDefinition,
    EngineModel,
    EngineRuntime,
    Launch,
    Overhead,
    OverheadCurve,
    PlanFlags,
    Scheduling,
)


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
    return _model(engine, build or EngineBuild(), gpu.compute_capability_major if gpu else None)


@lru_cache(maxsize=1024)
def _model(engine: Engine, build: EngineBuild, compute_capability_major: int | None) -> EngineModel:
    return definition(engine).model(build, compute_capability_major)


__all__ = [
    "Engine",
    "EngineBuild",
    "EngineDefinition",
    "EngineModel",
    "EngineRuntime",
    "Launch",
    "Overhead",
    "OverheadCurve",
    "PlanFlags",
    "Scheduling",
    "definition",
    "engine_model",
]
