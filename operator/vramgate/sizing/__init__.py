"""The sizing core: pure arithmetic of GPU memory for LLM serving. No Kubernetes import lives here.

Public API: `load_model` / `find_gpu` to read the catalogs or a config.json, `PlanRequest` and `plan()`
to size a deployment, `Plan` for the answer, `to_json` for its camelCase JSON form.
"""

from vramgate.sizing.architecture import ModelArchitecture, architecture_from_config
from vramgate.sizing.catalog import GpuType, find_gpu, find_model, gpu_catalog, load_model, model_catalog
from vramgate.sizing.engines import Engine
from vramgate.sizing.errors import SizingError
from vramgate.sizing.planner import Candidate, Plan, PlanRequest, Suggestion, plan
from vramgate.sizing.precision import KvCacheDtype, Precision
from vramgate.sizing.records import to_json

__all__ = [
    "Candidate",
    "Engine",
    "GpuType",
    "KvCacheDtype",
    "ModelArchitecture",
    "Plan",
    "PlanRequest",
    "Precision",
    "SizingError",
    "Suggestion",
    "architecture_from_config",
    "find_gpu",
    "find_model",
    "gpu_catalog",
    "load_model",
    "model_catalog",
    "plan",
    "to_json",
]
