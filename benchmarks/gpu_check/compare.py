"""Compare vramgate's weights and KV-cache bytes with what a real GPU allocated (measure.py's JSON).

python benchmarks/gpu_check/compare.py benchmarks/gpu_check/h100-measured.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from vramgate.sizing import Precision, load_model
from vramgate.sizing.memory import kv_layout, resolve_weight_format, weights_bytes


def expected(record: dict[str, Any]) -> tuple[int, int]:
    """vramgate's bf16 weights bytes and the KV bytes of one `tokens`-long sequence, unpaged.

    transformers keeps `window - 1` tokens in a sliding-window layer (engines keep one scheduling step more).
    """
    # Measured in bf16, the language model alone (measure.py builds a multimodal wrapper's text_config).
    arch = replace(load_model(record["id"]), quantization=None, vision_parameters=0)
    weights = weights_bytes(arch, resolve_weight_format(arch, Precision.BF16), 1).per_gpu
    layout = kv_layout(arch, 2, 1, 1)
    tokens = record["tokens"]
    sliding = arch.num_sliding_window_layers
    window_tokens = min(tokens, (arch.sliding_window or tokens + 1) - 1)
    kv = layout.bytes_per_token_per_layer * ((arch.num_layers - sliding) * tokens + sliding * window_tokens)
    return weights, kv


def rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for record in measured["models"]:
        if "error" in record:
            continue
        weights, kv = expected(record)
        out.append(
            {
                "id": record["id"],
                "weights_measured": record["parameter_bytes"],
                "weights_predicted": weights,
                "weights_error": weights / record["parameter_bytes"] - 1,
                "kv_measured": record["kv_cache_bytes"],
                "kv_predicted": kv,
                "kv_error": kv / record["kv_cache_bytes"] - 1,
            }
        )
    return out


def main() -> None:
    measured = json.loads(Path(sys.argv[1]).read_text())
    total_mib = measured["cuda_total_bytes"] / 2**20
    print(f"{measured['device']}, torch {measured['torch']}, CUDA total {total_mib:.0f} MiB")
    print(
        "| model | weights GiB measured / vramgate | err | KV bytes (512 tokens) measured / vramgate | err |"
    )
    print("|---|---|---|---|---|")
    for row in rows(measured):
        print(
            f"| {row['id']} | {row['weights_measured'] / 2**30:.3f} / {row['weights_predicted'] / 2**30:.3f} "
            f"| {row['weights_error']:+.2%} | {row['kv_measured']:,} / {row['kv_predicted']:,} "
            f"| {row['kv_error']:+.2%} |"
        )


if __name__ == "__main__":
    main()
