"""The built-in catalogs: coverage, parameter counts against the official ones, look-ups."""

from __future__ import annotations

import pytest

from vramgate.sizing import GpuType, SizingError, find_gpu, find_model, gpu_catalog, model_catalog
from vramgate.sizing.architecture import parameter_groups
from vramgate.sizing.catalog import CATALOG_DIR, CATALOGS, built_catalog, unknown_gpu
from vramgate.sizing.units import GIB

REQUIRED_MODELS = [
    "tiiuae/falcon-7b",
    "tiiuae/falcon-40b",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-13b-hf",
    "meta-llama/Llama-2-70b-hf",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-405B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct",
    "google/gemma-2-9b-it",
    "google/gemma-2-27b-it",
    "microsoft/Phi-3-mini-4k-instruct",
    "microsoft/Phi-3-medium-4k-instruct",
    "deepseek-ai/DeepSeek-V3",
]
REQUIRED_GPUS = [
    "T4",
    "L4",
    "A10G",
    "A10",
    "L40S",
    "A100-40GB",
    "A100-80GB",
    "H100-80GB",
    "H200",
    "B200",
    "RTX-4090",
]


def test_catalog_has_the_widely_deployed_models() -> None:
    assert len(model_catalog()) >= 25
    for model_id in REQUIRED_MODELS:
        assert find_model(model_id).id == model_id


@pytest.mark.parametrize("entry", list(model_catalog().values()), ids=lambda m: m.id)
def test_computed_parameter_count_is_within_two_percent_of_official(entry: object) -> None:
    model = find_model(entry.id)  # type: ignore[attr-defined]
    if model.parameters is None:
        pytest.skip("no official count stated")
    computed = parameter_groups(model.architecture()).total
    assert computed == pytest.approx(model.parameters, rel=0.02)


@pytest.mark.parametrize("entry", list(model_catalog().values()), ids=lambda m: m.id)
def test_every_entry_names_its_source(entry: object) -> None:
    assert str(entry.source).startswith("https://")  # type: ignore[attr-defined]


def test_lookup_is_case_insensitive() -> None:
    assert find_model("META-LLAMA/llama-3.1-8b-instruct").id == "meta-llama/Llama-3.1-8B-Instruct"


def test_unknown_model_suggests_close_ids() -> None:
    with pytest.raises(SizingError, match="did you mean tiiuae/falcon-7b"):
        find_model("falcon-7b")


def test_gpu_catalog_covers_the_common_types_with_node_labels() -> None:
    for name in REQUIRED_GPUS:
        gpu = find_gpu(name)
        assert gpu.product.replace("-", "").isalnum()
        assert gpu.cuda_total_bytes < gpu.memory_bytes
    assert find_gpu("nvidia-a10g").name == "A10G"  # the node label works too


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-80GB"),  # nvidia-smi's product name
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("A100-SXM4-40GB", "A100-40GB"),  # an older GFD label, without the NVIDIA- prefix
        ("  nvidia geforce rtx 4090 ", "RTX-4090"),
    ],
)
def test_a_gpu_is_found_by_the_name_nvidia_smi_prints(written: str, name: str) -> None:
    assert find_gpu(written).name == name
    assert len(gpu_catalog()) >= len(REQUIRED_GPUS)


def test_every_gpu_has_its_sm_count_from_a_vendor_document() -> None:
    for gpu in gpu_catalog().values():
        assert gpu.sm_count is not None and gpu.sm_source, gpu.name
        assert gpu.multiprocessors == gpu.sm_count
    assert find_gpu("H100-80GB").sm_count == 132 and find_gpu("A100-40GB").sm_count == 108
    assert max(gpu.multiprocessors for gpu in gpu_catalog().values()) <= unknown_gpu(GIB).multiprocessors


def test_unknown_gpu_lists_the_known_ones() -> None:
    with pytest.raises(SizingError, match="'A11G' is not a known GPU type; did you mean A10G"):
        find_gpu("A11G")


@pytest.mark.parametrize("name", CATALOGS)
def test_the_packaged_json_is_built_from_the_yaml(name: str) -> None:
    committed = (CATALOG_DIR / f"{name}.json").read_text(encoding="utf-8")
    assert committed == built_catalog(name), f"catalog/{name}.json is stale: run `make catalog`"


@pytest.mark.parametrize("capability", ["9", "9.0\n", "abc", "9.0.1"])
def test_a_gpu_type_refuses_a_compute_capability_that_is_not_major_dot_minor(capability: str) -> None:
    """A node's labels make GPU types too: a malformed capability is refused, never parsed later."""
    with pytest.raises(SizingError, match="compute_capability: String should match pattern"):
        GpuType(name="x", product="x", compute_capability=capability, memory_mib=1024, price_per_hour=1.0)
