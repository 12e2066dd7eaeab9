"""Measure real weights and KV-cache bytes of catalog models on a GPU (random weights, no download).

Runs where PyTorch, transformers and a CUDA GPU are; imports nothing from vramgate, so it needs only
the catalog file. Each model is built from its catalog config.json fields in bf16 straight on the GPU;
the bytes the CUDA allocator holds afterwards are the weights. One forward pass over TOKENS tokens with
the cache on gives the KV bytes per token. Results go to a JSON file, one record per model, written
as each finishes so a cut-off run still reports what it measured.

    python benchmarks/gpu_check/measure.py operator/vramgate/catalog/models.yaml OUT.json MODEL...
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

TOKENS = 512


def _config(entry: dict[str, Any]) -> Any:
    fields = dict(entry["config"])
    fields.pop("quantization_config", None)
    fields.pop("architectures", None)
    text = fields.pop("text_config", None)
    if text:  # multimodal wrappers: measure the language model alone
        fields = {**fields, **text}
    model_type = fields.pop("model_type")
    return AutoConfig.for_model(model_type, **fields)


def _cache_bytes(cache: Any) -> tuple[int, list[list[int]]]:
    total, shapes = 0, []
    for layer in getattr(cache, "layers", []):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
                shapes.append(list(tensor.shape))
    return total, shapes


def measure(entry: dict[str, Any]) -> dict[str, Any]:
    config = _config(entry)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    started = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    weights_allocated = torch.cuda.memory_allocated() - before
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, int(config.vocab_size), (1, TOKENS), device="cuda")
    with torch.no_grad():
        output = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    kv_bytes, shapes = _cache_bytes(output.past_key_values)
    record = {
        "id": entry["id"],
        "parameters": parameters,
        "weights_bytes_allocated": weights_allocated,
        "parameter_bytes": parameter_bytes,
        "tokens": TOKENS,
        "kv_cache_bytes": kv_bytes,
        "kv_layer_shapes": shapes[:4],
        "kv_layers": len(shapes) // 2,
        "seconds": round(time.perf_counter() - started, 1),
    }
    del model, output
    gc.collect()
    torch.cuda.empty_cache()
    return record


def main() -> None:
    catalog_path, out_path, *wanted = sys.argv[1:]
    entries = {m["id"]: m for m in yaml.safe_load(Path(catalog_path).read_text())["models"]}
    torch.zeros(1, device="cuda")  # creates the CUDA context
    free, total = torch.cuda.mem_get_info()
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "cuda_total_bytes": total,
        "cuda_context_bytes": total - free - torch.cuda.memory_reserved(),
        "torch": torch.__version__,
        "models": [],
    }
    for model_id in wanted:
        try:
            results["models"].append(measure(entries[model_id]))
        except Exception as exc:  # report and go on: one model's failure must not cost the others
            results["models"].append({"id": model_id, "error": f"{type(exc).__name__}: {exc}"[:500]})
        Path(out_path).write_text(json.dumps(results, indent=1))
        print(json.dumps(results["models"][-1])[:300], flush=True)


if __name__ == "__main__":
    main()
