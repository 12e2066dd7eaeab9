"""The built-in model and GPU catalogs (data files in `vramgate/catalog/`), and look-ups in them.

The YAML files are the source, with each value's provenance in comments; the JSON files beside them are
built from them (`make catalog`; a test fails when they differ) and are what
the package reads: parsing JSON takes a fiftieth of libyaml's time, and `vramgate plan` need not
import PyYAML at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from vramgate.sizing.architecture import ModelArchitecture, architecture_from_config, load_config_file
from vramgate.sizing.cuda_context import cuda_context_bytes
from vramgate.sizing.errors import SizingError
from vramgate.sizing.records import bounded, check, from_json
from vramgate.sizing.units import MIB

# Share of nvidia-smi's total that the CUDA runtime does not hand out, for GPUs whose CUDA total was
# never measured (measured ones lose 0.6-1.7%: H100 0.6%, A100 1.1%, L40S 1.3%, T4 1.7%).
_UNMEASURED_RESERVE = 0.012
# Streaming multiprocessors taken for a GPU whose count is not known: the most of any current NVIDIA GPU,
# the RTX PRO 6000 Blackwell's 188 (its datasheet's 24,064 CUDA cores at 128 per SM), as many as any catalog
# GPU has. Buffers an engine sizes per SM are then never smaller than the real ones.
ASSUMED_SM_COUNT = 188


@dataclass(frozen=True, kw_only=True)
class GpuType:
    """One GPU model as a scheduler and an engine see it."""

    name: str
    product: str  # node label nvidia.com/gpu.product (GPU Feature Discovery)
    compute_capability: str = field(metadata=bounded(pattern=r"^\d+\.\d+$"))
    # Total memory as nvidia-smi reports it.
    memory_mib: int = field(metadata=bounded(gt=0, alias="memoryMiB"))
    cuda_total_mib: int | None = field(default=None, metadata=bounded(gt=0, alias="cudaTotalMiB"))
    sm_count: int | None = field(default=None, metadata=bounded(gt=0))  # streaming multiprocessors
    sm_source: str = ""  # the vendor document giving `sm_count`
    price_per_hour: float = field(metadata=bounded(gt=0))
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        check(self)

    def is_named(self, key: str) -> bool:
        """Whether a name written for a GPU, as `gpu_name_key` reads it, names this type (by its short
        name or its node label)."""
        return key in (gpu_name_key(self.name), gpu_name_key(self.product))

    @property
    def compute_capability_major(self) -> int:
        return int(self.compute_capability.split(".")[0])

    @property
    def multiprocessors(self) -> int:
        """Streaming multiprocessors, or the most any GPU has where the count is not known."""
        return self.sm_count or ASSUMED_SM_COUNT

    @property
    def cuda_context_bytes(self) -> int:
        """What a process's CUDA context holds on this GPU before any tensor."""
        return cuda_context_bytes(self.compute_capability, self.sm_count)

    @property
    def memory_bytes(self) -> int:
        """nvidia-smi's total, the figure people quote."""
        return self.memory_mib * MIB

    @property
    def cuda_total_bytes(self) -> int:
        """What the CUDA runtime reports as total: engines size their fraction from this figure."""
        if self.cuda_total_mib is not None:
            return self.cuda_total_mib * MIB
        return int(self.memory_mib * (1 - _UNMEASURED_RESERVE)) * MIB


UNKNOWN_GPU = "unknown"
# What a GPU known only by its memory is taken to be: the choice that leaves the smaller KV cache where
# the compute capability decides (MXFP4 experts padded as on Blackwell, the V1 engine on every vLLM release
# that has it, TGI's largest warm-up), said in the plan's assumptions.
UNKNOWN_GPU_COMPUTE_CAPABILITY = "10.0"


def unknown_gpu(cuda_total_bytes: int) -> GpuType:
    """A GPU of which only the memory the CUDA runtime reports is known."""
    mib = max(cuda_total_bytes // MIB, 1)
    return GpuType(
        name=UNKNOWN_GPU,
        product="",
        compute_capability=UNKNOWN_GPU_COMPUTE_CAPABILITY,
        memory_mib=mib,
        cuda_total_mib=mib,
        price_per_hour=1.0,
        note="only its memory is known",
    )


@dataclass(frozen=True, kw_only=True)
class CatalogModel:
    """One catalog entry: a real config.json subset with its provenance."""

    id: str
    parameters: int | None = None
    active_parameters: int | None = None
    parameters_source: str = ""
    source: str
    note: str = ""
    config: dict[str, Any]

    def architecture(self) -> ModelArchitecture:
        return architecture_from_config(self.config, self.id, self.parameters, source=f"catalog {self.id}")


# The package is always installed as files (wheel or editable), never zipped: a plain path spares the CLI
# importlib.resources and what it imports (tempfile, zipfile, compression modules).
CATALOG_DIR = Path(__file__).resolve().parents[1] / "catalog"
CATALOGS = ("models", "gpus", "mig")  # each file's entries are the list under its own name


def catalog_entries(name: str) -> list[dict[str, Any]]:
    """The entries of one catalog (`models`, `gpus`, `mig`), from its built JSON."""
    data = json.loads((CATALOG_DIR / f"{name}.json").read_text(encoding="utf-8"))
    entries: list[dict[str, Any]] = data[name]
    return entries


def built_catalog(name: str) -> str:
    """The JSON text `make catalog` writes for `name`.yaml: its entries, nothing of its comments."""
    import yaml  # building only; libyaml's loader where present

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    source = yaml.load((CATALOG_DIR / f"{name}.yaml").read_text(encoding="utf-8"), Loader=loader)
    built = {"built from": f"{name}.yaml by `make catalog`: edit that file, not this one", name: source[name]}
    return json.dumps(built, indent=1, ensure_ascii=False) + "\n"


def write_catalogs() -> None:
    """`make catalog`: rebuild every JSON catalog from its YAML source."""
    for name in CATALOGS:
        (CATALOG_DIR / f"{name}.json").write_text(built_catalog(name), encoding="utf-8")


@cache
def model_catalog() -> dict[str, CatalogModel]:
    """Catalog models keyed by lower-cased Hugging Face id."""
    models = (from_json(CatalogModel, entry) for entry in catalog_entries("models"))
    return {model.id.lower(): model for model in models}


@cache
def gpu_catalog() -> dict[str, GpuType]:
    """GPU types keyed by lower-cased short name."""
    gpus = (from_json(GpuType, entry) for entry in catalog_entries("gpus"))
    return {gpu.name.lower(): gpu for gpu in gpus}


def _did_you_mean(wanted: str, known: list[str]) -> str:
    import difflib  # only an unknown name needs it

    close = difflib.get_close_matches(wanted.lower(), [k.lower() for k in known], n=3, cutoff=0.5)
    # A bare name ("falcon-7b") should find its org-qualified id.
    close += [k for k in known if k.lower().endswith("/" + wanted.lower()) and k.lower() not in close]
    by_lower = {k.lower(): k for k in known}
    names = [by_lower.get(c, c) for c in close][:3]
    return f"; did you mean {', '.join(names)}?" if names else ""


def find_model(model_id: str) -> CatalogModel:
    """A catalog model by Hugging Face id, case-insensitive, with suggestions when unknown."""
    catalog = model_catalog()
    found = catalog.get(model_id.lower())
    if found is None:
        known = [model.id for model in catalog.values()]
        raise SizingError("model", f"{model_id!r} is not in the catalog{_did_you_mean(model_id, known)}")
    return found


def gpu_name_key(name: str) -> str:
    """How a GPU name is compared: case-insensitive; spaces as dashes, so nvidia-smi's product name
    ("NVIDIA H100 80GB HBM3") reads as the node label GPU Feature Discovery derives from it; and without
    the NVIDIA- prefix, which older GFD releases leave out (A100-SXM4-40GB)."""
    return re.sub(r"[\s_]+", "-", name.strip().lower()).removeprefix("nvidia-")


def find_gpu(name: str) -> GpuType:
    """A GPU type by short name, node-label product value or nvidia-smi product name."""
    catalog = gpu_catalog()
    wanted = gpu_name_key(name)
    for gpu in catalog.values():
        if gpu.is_named(wanted):
            return gpu
    known = [gpu.name for gpu in catalog.values()]
    raise SizingError(
        "gpu", f"{name!r} is not a known GPU type{_did_you_mean(name, known)} (known: {', '.join(known)})"
    )


def load_model(model: str) -> ModelArchitecture:
    """A model from a catalog id or a path to a config.json (a directory holding one works too)."""
    path = Path(model)
    if path.suffix == ".json" or path.is_dir() or path.exists():
        config_path = path / "config.json" if path.is_dir() else path
        config = load_config_file(config_path)
        parameters = config.get("_param_count") if isinstance(config.get("_param_count"), int) else None
        return architecture_from_config(
            config, _name_for_path(config_path, config), parameters, str(config_path)
        )
    try:
        return find_model(model).architecture()
    except SizingError as exc:
        raise SizingError(exc.field, f"{exc.message} (or give a path to its config.json)") from None


def _name_for_path(path: Path, config: dict[str, Any]) -> str:
    name = config.get("_name_or_path")
    return (
        name
        if isinstance(name, str) and name
        else path.parent.name
        if path.name == "config.json"
        else path.stem
    )
