"""A stand-in for vLLM, SGLang and TGI: starts in a second, on no GPU, and serves what the operator and
the kubelet's probes read: the health path, /v1/models, and the engine's KV-cache capacity (vLLM:
`vllm:cache_config_info` in /metrics; SGLang: /get_server_info; TGI: /info).

Like the real engines it refuses flags it does not know, so a flag the operator generates that the
engine would reject fails here too. The flag lists are the engines' own (names and arity as their
--help prints them), written down here rather than taken from vramgate.

The KV capacity it reports is what the arguments ask for: room for max-num-seqs sequences of
max-model-len tokens, rounded up to whole blocks; STANDIN_KV_OFFSET (a fraction, e.g. 0.3) reports
that much less, as an engine that got less memory than planned would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Engine:
    name: str
    model: str
    max_len: str
    max_seqs: str
    memory_fraction: str
    valued: tuple[str, ...]  # flags that take a value
    switches: tuple[str, ...] = ()  # flags that take none
    default_port: int = 8000
    block_size: int = 16


VLLM = Engine(
    "vllm",
    model="--model",
    max_len="--max-model-len",
    max_seqs="--max-num-seqs",
    memory_fraction="--gpu-memory-utilization",
    valued=(
        "--model",
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--max-model-len",
        "--max-num-seqs",
        "--gpu-memory-utilization",
        "--dtype",
        "--kv-cache-dtype",
        "--quantization",
        "--max-num-batched-tokens",
        "--block-size",
        "--port",
        "--host",
        "--served-model-name",
        "--download-dir",
        "--seed",
        "--swap-space",
        "--tokenizer",
        "--revision",
    ),
    switches=("--trust-remote-code", "--enforce-eager", "--enable-prefix-caching", "--disable-log-requests"),
)
SGLANG = Engine(
    "sglang",
    model="--model-path",
    max_len="--context-length",
    max_seqs="--max-running-requests",
    memory_fraction="--mem-fraction-static",
    valued=(
        "--model-path",
        "--tp-size",
        "--pp-size",
        "--context-length",
        "--max-running-requests",
        "--mem-fraction-static",
        "--dtype",
        "--kv-cache-dtype",
        "--quantization",
        "--chunked-prefill-size",
        "--port",
        "--host",
        "--served-model-name",
        "--tokenizer-path",
        "--revision",
        "--page-size",
    ),
    switches=("--trust-remote-code", "--disable-radix-cache", "--enable-metrics"),
    default_port=30000,
    block_size=1,
)
TGI = Engine(
    "tgi",
    model="--model-id",
    max_len="--max-total-tokens",
    max_seqs="--max-concurrent-requests",
    memory_fraction="--cuda-memory-fraction",
    valued=(
        "--model-id",
        "--num-shard",
        "--max-total-tokens",
        "--max-input-tokens",
        "--max-concurrent-requests",
        "--cuda-memory-fraction",
        "--dtype",
        "--kv-cache-dtype",
        "--quantize",
        "--max-batch-prefill-tokens",
        "--port",
        "--hostname",
        "--revision",
        "--max-batch-total-tokens",
    ),
    switches=("--trust-remote-code", "--disable-custom-kernels"),
    default_port=80,
    block_size=1,
)
ENGINES = {engine.name: engine for engine in (VLLM, SGLANG, TGI)}


def parse(engine: Engine, argv: list[str]) -> dict[str, str]:
    """The flags as given (``--flag=value`` or ``--flag value``); unknown flags exit with status 2."""
    parser = argparse.ArgumentParser(prog=engine.name, allow_abbrev=False)
    for flag in engine.valued:
        parser.add_argument(flag)
    for flag in engine.switches:
        parser.add_argument(flag, action="store_true")
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value not in (None, False)}


def kv_capacity(engine: Engine, args: dict[str, str], offset: float) -> tuple[int, int]:
    """(blocks, tokens per block) the arguments ask for, less ``offset``."""

    def get(flag: str, default: int) -> int:
        return int(args.get(flag.lstrip("-").replace("-", "_"), default))

    tokens = get(engine.max_seqs, 256) * get(engine.max_len, 2048)
    block_size = get("--block-size", engine.block_size) if engine is VLLM else engine.block_size
    return math.floor(math.ceil(tokens / block_size) * (1.0 - offset)), block_size


def serve(engine: Engine, argv: list[str]) -> None:
    args = parse(engine, argv)
    model = args[engine.model.lstrip("-").replace("-", "_")]
    blocks, block_size = kv_capacity(engine, args, float(os.environ.get("STANDIN_KV_OFFSET", "0")))
    fraction = args.get(engine.memory_fraction.lstrip("-").replace("-", "_"), "0.9")
    routes: dict[str, tuple[str, str]] = {
        "/health": ("text/plain", ""),
        "/v1/models": (
            "application/json",
            json.dumps({"object": "list", "data": [{"id": model, "object": "model"}]}),
        ),
    }
    if engine is VLLM:
        routes["/metrics"] = (
            "text/plain; version=0.0.4",
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{block_size="{block_size}",gpu_memory_utilization="{fraction}",'
            f'num_gpu_blocks="{blocks}",num_cpu_blocks="0"}} 1.0\n',
        )
    elif engine is SGLANG:
        routes["/get_server_info"] = ("application/json", json.dumps({"max_total_num_tokens": blocks}))
    else:
        routes["/info"] = (
            "application/json",
            json.dumps({"model_id": model, "max_batch_total_tokens": blocks}),
        )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = routes.get(self.path, ("text/plain", None))
            payload = (body if body is not None else "not found\n").encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would flood the log

    host = args.get("host") or args.get("hostname") or "0.0.0.0"
    port = int(args.get("port", engine.default_port))
    print(
        f"{engine.name} stand-in serving {model} on {host}:{port}: {blocks} blocks x {block_size}", flush=True
    )
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    serve(ENGINES[sys.argv[1]], sys.argv[2:])
