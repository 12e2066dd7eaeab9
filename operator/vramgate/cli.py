"""The commands of `vramgate` (also `kubectl vramgate`): plan deployments, list the catalogs, check
manifests offline. `vramgate.entry` is the executable; it loads this module when a command runs.

What only one command needs (rich's tables, the CRD generator, the calibration report, the admission
decision) is imported inside that command, so `vramgate plan -o json` loads no more than planning needs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import click

from vramgate.entry import EXIT_DOES_NOT_FIT, EXIT_FITS
from vramgate.sizing import (
    Engine,
    KvCacheDtype,
    ModelArchitecture,
    Plan,
    PlanRequest,
    Precision,
    SizingError,
    find_gpu,
    gpu_catalog,
    load_model,
    model_catalog,
    plan,
    to_json,
)
from vramgate.sizing.planner import (
    DEFAULT_MAX_MEMORY_FRACTION,
    MAX_CONCURRENCY,
    MAX_GPUS_PER_REPLICA,
    MAX_SEQUENCE_TOKENS,
)
from vramgate.sizing.units import GIB, KIB, format_gib

if TYPE_CHECKING:
    import yaml
    from rich.console import Console
    from rich.text import Text

    from vramgate.calibration import CalibrationRow, Summary

MAX_GIB = 1_000_000.0  # a million GiB per GPU: past any hardware, still no overflow
CLUSTER_TIMEOUT = (10, 60)  # seconds to connect to, and to read nodes or pods from, a live cluster

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _output_option(command: _Command) -> _Command:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json", "yaml"]),
        default="table",
        show_default=True,
        help="Output format; JSON and YAML keys are stable.",
    )(command)


def _console() -> Console:
    """A console that keeps tables whole when piped (rich assumes 80 columns off a terminal)."""
    from rich.console import Console

    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=150)


def _emit(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml  # PyYAML only where YAML is read or written: `plan -o json` never needs it

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


@click.group()
def cli() -> None:
    """The commands; `vramgate.entry` lists them and runs one."""


# ----------------------------------------------------------------------------------------------------
# placement on a cluster's nodes (a dump, or the live cluster)


def _cluster_options(command: _Command) -> _Command:
    command = click.option(
        "--placement",
        type=click.Choice(["auto", "cluster", "catalog"]),
        default="auto",
        show_default=True,
        help="With --nodes/--kubeconfig: auto is cluster when a GPU node exists, else catalog.",
    )(command)
    command = click.option(
        "--kubeconfig",
        type=click.Path(exists=True, dir_okay=False),
        help="Place on the live cluster of this kubeconfig (reads nodes and pods).",
    )(command)
    return click.option(
        "--nodes",
        "nodes_file",
        help="Place on the nodes of a `kubectl get nodes -o yaml` (or JSON) dump; `kubectl get nodes,pods "
        "-A -o yaml` adds the pods, so GPUs in use count. Without it (or --kubeconfig): catalog placement.",
    )(command)


def _in_cluster(options: dict[str, Any]) -> bool:
    return bool(options["nodes_file"] or options["kubeconfig"])


def _cluster_objects(nodes_file: str | None, kubeconfig: str | None) -> list[dict[str, Any]]:
    """Nodes and pods from a dump (List items or documents) or from the live cluster."""
    if nodes_file:
        found: list[dict[str, Any]] = []
        for doc in _documents(nodes_file):
            if isinstance(doc, dict):
                found += [i for i in _items(doc) if isinstance(i, dict)] if "items" in doc else [doc]
        if not any(item.get("kind") == "Node" for item in found):
            raise click.ClickException(
                f"{nodes_file}: no Node objects (expected `kubectl get nodes -o yaml`)"
            )
        return found
    import urllib3
    import yaml
    from kubernetes import client, config  # only the live-cluster path needs the client

    try:
        api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        with api:
            core = client.CoreV1Api(api)
            nodes = api.sanitize_for_serialization(core.list_node(_request_timeout=CLUSTER_TIMEOUT).items)
            pods = api.sanitize_for_serialization(
                core.list_pod_for_all_namespaces(_request_timeout=CLUSTER_TIMEOUT).items
            )
    except (config.ConfigException, yaml.YAMLError, UnicodeDecodeError, TypeError, AttributeError) as exc:
        raise click.ClickException(
            f"{kubeconfig}: not a usable kubeconfig: {str(exc).splitlines()[0]}"
        ) from None
    except client.ApiException as exc:
        raise click.ClickException(f"{kubeconfig}: the cluster answered {exc.status} {exc.reason}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = str(getattr(exc, "reason", None) or exc).splitlines()[0]
        raise click.ClickException(f"{kubeconfig}: cannot reach the cluster: {reason}") from None
    return [{**node, "kind": "Node"} for node in nodes] + [{**pod, "kind": "Pod"} for pod in pods]


def _decision_context(options: dict[str, Any]) -> Any:
    """The admission decision's context for a dump or a live cluster (catalog placement without)."""
    from vramgate.decision import DecisionContext
    from vramgate.placement import Inventory, PlacementMode, PlacementPolicy

    mode = None if options["placement"] == "auto" else PlacementMode(options["placement"])
    if not _in_cluster(options):
        return DecisionContext(placement=PlacementPolicy(mode=mode))
    objects = _cluster_objects(options["nodes_file"], options["kubeconfig"])
    inventory = Inventory.from_objects(
        [o for o in objects if o.get("kind") == "Node"], [o for o in objects if o.get("kind") == "Pod"]
    )
    return DecisionContext(inventory=inventory, placement=PlacementPolicy(mode=mode))


# ----------------------------------------------------------------------------------------------------
# plan

_ARCHITECTURE_FLAGS = {
    "layers": "num_layers",
    "hidden_size": "hidden_size",
    "heads": "num_attention_heads",
    "kv_heads": "num_kv_heads",
    "head_dim": "head_dim",
    "vocab_size": "vocab_size",
    "intermediate_size": "intermediate_size",
}
_POSITIVE = click.IntRange(min=1, max=10_000_000)


class _FiniteRange(click.FloatRange):
    """click's FloatRange, without NaN: it compares false with both bounds, so the range let it in."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return number


def _parse_params(value: str | None) -> int | None:
    """`7B`, `70b`, `1.5T`, `350M` or a plain count."""
    if value is None:
        return None
    text = value.strip().upper()
    factor = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}.get(text[-1:], 1)
    number = text[:-1] if factor != 1 else text
    try:
        count = round(float(number) * factor)
    except (ValueError, OverflowError):  # not a number, NaN, or infinite
        raise SizingError(
            "--params", f"{value!r} is not a parameter count (like 7B, 350M or 6921720704)"
        ) from None
    if not 0 < count <= 10**14:
        raise SizingError("--params", f"{value!r} is outside 1 to 100T")
    return count


def _architecture(
    model: str | None, overrides: dict[str, int | None], params: int | None
) -> ModelArchitecture:
    """A catalog/config model with flag overrides, or a model described by flags alone.

    Without `--heads`, K and V are taken as one head as wide as the hidden size: the multi-head
    arithmetic of the seed article (2 x layers x d_model per token).
    """
    given: dict[str, Any] = {
        field: value for flag, field in _ARCHITECTURE_FLAGS.items() if (value := overrides[flag]) is not None
    }
    if params is not None:
        given["parameters"] = params
    if model is not None:
        base = load_model(model)
        return dataclasses.replace(base, **given)
    missing = [f"--{flag.replace('_', '-')}" for flag in ("layers", "hidden_size") if overrides[flag] is None]
    if missing:
        raise SizingError(
            "--model", f"give a catalog id or config.json, or describe the model with {' and '.join(missing)}"
        )
    hidden = given["hidden_size"]
    heads = given.get("num_attention_heads", 1)
    head_dim = given.get("head_dim", hidden // heads)
    shape: dict[str, Any] = {
        "num_attention_heads": heads,
        "num_kv_heads": given.get("num_kv_heads", heads),
        "head_dim": head_dim,
        "vocab_size": 32000,
        "intermediate_size": 4 * hidden,
        **given,
    }
    return ModelArchitecture(name="custom", **shape)


def _gib_to_bytes(value: float | None) -> int | None:
    return None if value is None else round(value * GIB)


@cli.command("plan")
@click.option("--model", "-m", help="Catalog id (Hugging Face id) or a path to a config.json.")
@click.option(
    "--precision", type=click.Choice([p.value for p in Precision]), default="auto", show_default=True
)
@click.option(
    "--kv-cache-dtype", type=click.Choice([d.value for d in KvCacheDtype]), default="auto", show_default=True
)
@click.option(
    "--max-seq-len",
    type=click.IntRange(1, MAX_SEQUENCE_TOKENS),
    required=True,
    help="Prompt + generated tokens per request.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    required=True,
    help="Requests in flight per replica.",
)
@click.option("--engine", type=click.Choice([e.value for e in Engine]), default="vllm", show_default=True)
@click.option(
    "--engine-version", help="Engine release (e.g. 0.11.0); vLLM's memory profile differs by release."
)
@click.option(
    "--gpu", help="Pin the GPU type: a catalog name, node label or nvidia-smi name (see `vramgate gpus`)."
)
@click.option(
    "--gpu-count", type=click.IntRange(1, MAX_GPUS_PER_REPLICA), help="Pin the GPU count (tensor parallel)."
)
@click.option(
    "--pipeline-parallel",
    type=click.IntRange(1, MAX_GPUS_PER_REPLICA),
    default=1,
    show_default=True,
    help="Pipeline stages; each holds its share of layers on --gpu-count GPUs.",
)
@click.option(
    "--max-memory-fraction",
    type=_FiniteRange(0, 1, min_open=True),
    default=DEFAULT_MAX_MEMORY_FRACTION,
    show_default=True,
    help="Cap on the fraction of each GPU the engine may take.",
)
@click.option(
    "--memory-fraction",
    type=_FiniteRange(0, 1, min_open=True),
    help="Fix the fraction (as an engine started with it) and report what the engine gets.",
)
@click.option("--params", help="Parameter count (7B, 350M, ...).")
@click.option("--layers", type=_POSITIVE)
@click.option("--hidden-size", type=_POSITIVE)
@click.option("--heads", type=_POSITIVE, help="Attention heads.")
@click.option(
    "--kv-heads", type=_POSITIVE, help="KV heads (1: multi-query; fewer than heads: grouped-query)."
)
@click.option("--head-dim", type=_POSITIVE)
@click.option("--vocab-size", type=_POSITIVE)
@click.option("--intermediate-size", type=_POSITIVE)
@click.option("--weights-gib", type=_FiniteRange(0, MAX_GIB), help="Known weights size (whole model).")
@click.option(
    "--gpu-memory-gib", type=_FiniteRange(0, MAX_GIB, min_open=True), help="GPU memory the runtime sees."
)
@click.option("--overhead-gib", type=_FiniteRange(0, MAX_GIB), help="Replace the modelled runtime overhead.")
@click.option("--max-num-batched-tokens", type=click.IntRange(1, MAX_SEQUENCE_TOKENS))
@click.option(
    "--max-num-seqs",
    type=click.IntRange(1, MAX_CONCURRENCY),
    help="The engine's batch limit (with --memory-fraction).",
)
@click.option("--block-size", type=click.IntRange(1, 4096), help="KV block size in tokens (vLLM: 16).")
@click.option(
    "--enforce-eager", is_flag=True, help="vLLM started with --enforce-eager: no CUDA graphs, no compilation."
)
@_cluster_options
@_output_option
def plan_command(**options: Any) -> int:
    """Plan one deployment: GPU type and count, memory fraction, max batch, and the whole field."""
    arch = _architecture(options["model"], options, _parse_params(options["params"]))
    request = PlanRequest(
        model=arch,
        model_source=options["model"] or arch.name,
        precision=Precision(options["precision"]),
        kv_cache_dtype=KvCacheDtype(options["kv_cache_dtype"]),
        max_seq_len=options["max_seq_len"],
        concurrency=options["concurrency"],
        engine=Engine(options["engine"]),
        engine_version=options["engine_version"],
        engine_eager=options["enforce_eager"],
        gpu=find_gpu(options["gpu"]) if options["gpu"] and not _in_cluster(options) else None,
        gpu_count=options["gpu_count"],
        pipeline_parallel=options["pipeline_parallel"],
        max_memory_fraction=options["max_memory_fraction"],
        memory_fraction=options["memory_fraction"],
        weights_bytes_override=_gib_to_bytes(options["weights_gib"]),
        gpu_memory_bytes_override=_gib_to_bytes(options["gpu_memory_gib"]),
        overhead_bytes_override=_gib_to_bytes(options["overhead_gib"]),
        max_num_batched_tokens=options["max_num_batched_tokens"],
        max_num_seqs=options["max_num_seqs"],
        block_size=options["block_size"],
    )
    if _in_cluster(options):
        return _plan_in_cluster(request, options)
    result = plan(request)
    if options["output"] == "table":
        _print_plan(result)
    else:
        _emit(to_json(result), options["output"])
    return EXIT_FITS if result.fits else EXIT_DOES_NOT_FIT


def _plan_in_cluster(request: PlanRequest, options: dict[str, Any]) -> int:
    """`plan --nodes/--kubeconfig`: the same inventory and placement rules as the operator."""
    from vramgate.placement import Preference, place

    context = _decision_context(options)
    pinned = (
        Preference(options["gpu"], options["gpu_count"], options["max_memory_fraction"])
        if options["gpu"]
        else None
    )
    placed = place(request, pinned=pinned, inventory=context.inventory, policy=context.placement)
    result, placement = placed.plan, placed.placement
    fits = result.fits and placement.refusal is None
    if options["output"] == "table":
        _print_plan(result)
        console = _console()
        console.print(f"[bold]placement[/]  {placement.mode.value}: {placement.inventory}")
        for skipped in placement.skipped:
            console.print(f"[yellow]skipped:[/] [{skipped.index}] {skipped.type}: {skipped.reason}")
        for line in (*placement.warnings, *placement.notes):
            console.print(f"[yellow]warning:[/] {line}")
        if placement.refusal:
            console.print(f"[red]refused:[/] {placement.refusal}")
    else:
        data = to_json(result)
        data["fits"] = fits
        data["placement"] = {
            **placement.as_dict(result),
            "warnings": [*placement.warnings, *placement.notes],
            "refusal": placement.refusal,
        }
        _emit(data, options["output"])
    return EXIT_FITS if fits else EXIT_DOES_NOT_FIT


_BAR_WIDTH = 32
_BAR_PARTS = (("weights", "█", "blue"), ("KV cache", "█", "green"), ("overhead", "█", "yellow"))


def _bar(weights: int, kv: int, overhead: int, total: int) -> Text:
    """One GPU's memory as a bar: weights / KV cache / overhead / free; red past the end."""
    from rich.text import Text

    bar = Text()
    used = 0
    for (_, glyph, style), size in zip(_BAR_PARTS, (weights, kv, overhead), strict=True):
        cells = round(size / total * _BAR_WIDTH)
        bar.append(glyph * min(cells, max(_BAR_WIDTH - used, 0)), style=style)
        used += cells
    if used > _BAR_WIDTH:
        bar.append("▶", style="bold red")
    else:
        bar.append("░" * (_BAR_WIDTH - used), style="dim")
    return bar


def _print_plan(result: Plan) -> None:
    from rich.table import Table

    console = _console()
    verdict = "[bold green]FITS[/]" if result.fits else "[bold red]DOES NOT FIT[/]"
    gpus = f"{result.gpu_count} x {result.gpu_type}" if result.gpu_count > 1 else result.gpu_type
    console.print(
        f"{verdict}  {result.model} ({result.attention}, {result.weights_format}) "
        f"on {gpus}, {result.engine.value}"
    )
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("memory fraction", f"{result.memory_fraction:.2f}  (cap {result.memory_fraction_cap:.2f})"),
        (
            "max batch",
            f"{result.max_batch} sequences of {result.max_model_len} tokens (target {result.concurrency})",
        ),
        (
            "weights",
            f"{format_gib(result.weights_bytes_per_gpu)} per GPU, {format_gib(result.weights_bytes)} total",
        ),
        (
            "KV per token",
            f"{result.kv_bytes_per_token / KIB:.1f} KiB "
            f"({result.kv_bytes_per_token_per_gpu / KIB:.1f} KiB per GPU)",
        ),
        (
            "KV cache",
            f"{format_gib(result.kv_cache_bytes_per_gpu)} per GPU for "
            f"{result.concurrency} x {result.max_model_len} tokens; "
            f"capacity {result.kv_capacity_tokens:,} tokens",
        ),
        (
            "overhead",
            f"{format_gib(result.overhead_bytes_per_gpu)} per GPU "
            f"(non-torch {format_gib(result.non_torch_bytes_per_gpu)}, "
            f"activation peak {format_gib(result.activation_bytes_per_gpu)}; "
            f"+{format_gib(result.outside_bytes_per_gpu)} outside the fraction)",
        ),
        (
            "CUDA graphs",
            f"{format_gib(result.cuda_graph_bytes_per_gpu)} per GPU, "
            # Only an engine that estimates its graphs while profiling counts them inside; the plan bounds it
            + (
                "inside the fraction (a bound on the engine's own estimate)"
                if result.cuda_graphs_inside_fraction
                else "outside the fraction"
            ),
        ),
        (
            "required",
            f"{format_gib(result.required_bytes_per_gpu)} of {format_gib(result.gpu_memory_bytes)} per GPU",
        ),
        (f"{result.engine.value} args", " ".join(result.engine_args[result.engine.value])),
        (f"{result.engine.value} release", result.engine_release),
        *(("assumed", note) for note in result.assumptions),
    ]
    for label, value in rows:
        summary.add_row(label, value)
    console.print(summary)
    for reason in result.reasons:
        console.print(f"[red]why:[/] {reason}")
    for suggestion in result.suggestions:
        console.print(f"[cyan]would fit:[/] {suggestion.text}")
    _print_field(console, result)


def _print_field(console: Console, result: Plan) -> None:
    from rich.table import Table
    from rich.text import Text

    """One row per GPU type, at its smallest count that fits (else its largest), with a memory bar."""
    by_type: dict[str, list[Any]] = {}
    for candidate in result.alternatives:
        by_type.setdefault(candidate.gpu_type, []).append(candidate)
    table = Table(title="every GPU type", title_justify="left")
    for column in (
        "GPU",
        "count",
        "fits",
        "fraction",
        "max batch",
        "per GPU: weights / KV / overhead / free",
        "$/h",
    ):
        table.add_column(
            column, justify="right" if column in ("count", "fraction", "max batch", "$/h") else "left"
        )
    for gpu_type, candidates in by_type.items():
        fitting = [c for c in candidates if c.fits]
        row = (
            min(fitting, key=lambda c: c.gpu_count) if fitting else max(candidates, key=lambda c: c.gpu_count)
        )
        chosen = gpu_type == result.gpu_type and row.gpu_count == result.gpu_count
        table.add_row(
            Text(("▸ " if chosen else "  ") + gpu_type, style="bold" if chosen else ""),
            str(row.gpu_count),
            Text("yes", style="green") if row.fits else Text("no", style="red"),
            f"{row.memory_fraction:.2f}",
            str(row.max_batch),
            _bar(
                row.weights_bytes_per_gpu,
                row.kv_cache_bytes_per_gpu,
                row.overhead_bytes_per_gpu,
                row.gpu_memory_bytes,
            ),
            f"{row.price_per_hour:.2f}",
        )
    console.print(table)
    legend = Text("  ")
    for name, glyph, style in _BAR_PARTS:
        legend.append(glyph, style=style).append(f" {name}  ")
    legend.append("░", style="dim").append(" free  ").append("▶", style="bold red").append(" over")
    console.print(legend)


# ----------------------------------------------------------------------------------------------------
# catalogs


@cli.command("models")
@_output_option
def models_command(output: str) -> int:
    """List the built-in model catalog."""
    rows: list[dict[str, Any]] = []
    for entry in sorted(model_catalog().values(), key=lambda m: m.id.lower()):
        arch = entry.architecture()
        rows.append(
            {
                "id": entry.id,
                "family": arch.family,
                "parameters": arch.parameter_count,
                "attention": arch.attention_kind,
                "layers": arch.num_layers,
                "kvHeads": arch.num_kv_heads,
                "headDim": arch.head_dim,
                "experts": arch.num_experts,
                "quantization": arch.quantization.method if arch.quantization else None,
                "maxPositionEmbeddings": arch.max_position_embeddings,
                "source": entry.source,
            }
        )
    if output != "table":
        _emit(rows, output)
        return EXIT_FITS
    from rich.table import Table

    table = Table(
        "model", "params", "attention", "layers", "KV heads", "head dim", "experts", "quant", "context"
    )
    for row in rows:
        table.add_row(
            row["id"],
            f"{row['parameters'] / 1e9:.1f}B",
            row["attention"],
            str(row["layers"]),
            str(row["kvHeads"]),
            str(row["headDim"]),
            str(row["experts"] or ""),
            row["quantization"] or "",
            str(row["maxPositionEmbeddings"] or ""),
        )
    _console().print(table)
    return EXIT_FITS


@cli.command("gpus")
@_output_option
def gpus_command(output: str) -> int:
    """List the built-in GPU catalog."""
    gpus = sorted(gpu_catalog().values(), key=lambda g: g.price_per_hour)
    if output != "table":
        _emit([to_json(gpu) for gpu in gpus], output)
        return EXIT_FITS
    from rich.table import Table

    table = Table("GPU", "node label (nvidia.com/gpu.product)", "nvidia-smi MiB", "CUDA total", "$/GPU-h")
    for gpu in gpus:
        table.add_row(
            gpu.name,
            gpu.product,
            str(gpu.memory_mib),
            format_gib(gpu.cuda_total_bytes),
            f"{gpu.price_per_hour:.2f}",
        )
    _console().print(table)
    return EXIT_FITS


# ----------------------------------------------------------------------------------------------------
# manifests


@cache
def _kubectl_yaml_loader() -> type[yaml.SafeLoader]:
    """YAML read as kubectl reads it (sigs.k8s.io/yaml over go-yaml v2), where PyYAML reads it otherwise:
    `1e3` is a number (PyYAML wants a dot in a float), `y` and `n` are booleans, `2024-01-01` is text
    (go-yaml keeps timestamps as strings), and so is `1:40` (no base-60 numbers). A manifest must mean
    the same to `vramgate check` as to the API server."""
    import yaml

    class KubectlYamlLoader(yaml.SafeLoader):
        bool_values: ClassVar[dict[str, bool]] = {**yaml.SafeLoader.bool_values, "y": True, "n": False}

    # go-yaml's own forms, matched before PyYAML's; the ones go-yaml lacks are left out of PyYAML's.
    replaced = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
    resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for tag, pattern, first in (
        ("tag:yaml.org,2002:bool", r"^(?:y|Y|n|N)$", "yYnN"),
        (
            "tag:yaml.org,2002:int",
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$",
            "-+0123456789",
        ),
        (
            "tag:yaml.org,2002:float",
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            "-+.0123456789",
        ),
    ):
        for character in first:
            resolvers.setdefault(character, []).append((tag, re.compile(pattern)))
    for character, known in yaml.SafeLoader.yaml_implicit_resolvers.items():
        resolvers.setdefault(character, []).extend(entry for entry in known if entry[0] not in replaced)
    KubectlYamlLoader.yaml_implicit_resolvers = resolvers
    return KubectlYamlLoader


def _documents(path: str) -> list[Any]:
    """Every YAML document in a file ("-" is stdin), with errors that name the file."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from None
    import yaml

    try:
        return [doc for doc in yaml.load_all(text, Loader=_kubectl_yaml_loader()) if doc is not None]
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise click.ClickException(f"{path}: not valid YAML: nested too deeply") from None


def _items(document: dict[str, Any]) -> list[Any]:
    """A `kind: List` document's items; none when `items` is not a list."""
    items = document.get("items")
    return items if isinstance(items, list) else []


def _llm_deployments(documents: list[Any]) -> list[dict[str, Any]]:
    """LLMDeployments among the documents, also inside `kind: List` items (a List of itself, which a
    YAML alias can write, is read once)."""
    from vramgate.spec import GROUP

    found: list[dict[str, Any]] = []
    pending, seen = list(documents), set()
    while pending:
        doc = pending.pop(0)
        if not isinstance(doc, dict) or id(doc) in seen:
            continue
        seen.add(id(doc))
        if doc.get("kind") == "List":
            pending[:0] = _items(doc)
        elif doc.get("kind") == "LLMDeployment" and str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
            found.append(doc)
    return found


@cli.command("check")
@click.option(
    "--filename", "-f", "files", multiple=True, required=True, help="Manifest file(s); '-' reads stdin."
)
@_cluster_options
@click.option(
    "--allowed-images",
    default="",
    metavar="PREFIXES",
    help="Image repository prefixes the operator allows, comma-separated (its VRAMGATE_ALLOWED_IMAGES); "
    "default: the engines' official images.",
)
def check_command(files: tuple[str, ...], allowed_images: str, **options: Any) -> int:
    """Run the admission webhook's exact decision on manifests, offline (for CI and GitOps)."""
    from vramgate.decision import decide
    from vramgate.images import ImagePolicy
    from vramgate.spec import GROUP

    context = _decision_context(options)
    if prefixes := [prefix.strip() for prefix in allowed_images.split(",") if prefix.strip()]:
        context = dataclasses.replace(context, image_policy=ImagePolicy.of(prefixes))
    refused = checked = 0
    for path in files:
        for resource in _llm_deployments(_documents(path)):
            decision = decide(resource, context)
            checked += 1
            refused += not decision.allowed
            mark = click.style("ok", fg="green") if decision.allowed else click.style("refused", fg="red")
            click.echo(f"{path}: {mark}: {decision.message}")
            for warning in decision.warnings:
                click.echo(f"{path}: {click.style('warning', fg='yellow')}: {warning}")
    if checked == 0:
        raise click.ClickException(f"no {GROUP} LLMDeployment in {', '.join(files)}")
    return EXIT_DOES_NOT_FIT if refused else EXIT_FITS


@cli.command("crd")
def crd_command() -> int:
    """Print the LLMDeployment CustomResourceDefinition generated from the spec models."""
    from vramgate.crd import render as render_crd

    click.echo(render_crd(), nl=False)
    return EXIT_FITS


# ----------------------------------------------------------------------------------------------------
# calibration


@cli.command("calibrate")
@click.argument("logs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--configs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of config.json files (default: configs/ beside LOGS).",
)
@_output_option
def calibrate_command(logs: Path, configs: Path | None, output: str) -> int:
    """Compare predictions with real engine start-up logs (a CSV like benchmarks/calibration/).

    Exits 0 when the held-out rows meet the accuracy targets, 1 (saying which on stderr) when not."""
    from vramgate.calibration import Split, calibrate, missed_targets

    rows = calibrate(logs, configs)
    records = [
        {
            "row": r.row_id,
            "split": str(r.split),
            "generation": r.generation,
            "source": r.source,
            "model": r.model,
            "gpu": r.gpu,
            "tp": r.tensor_parallel,
            "weightsGibPredicted": round(r.predicted.weights_bytes_per_gpu / GIB, 3) if r.predicted else None,
            "weightsGibReported": r.reported.weights_gib,
            "weightsError": None if r.weights_error is None else round(r.weights_error, 4),
            "kvGibPredicted": None if r.predicted_kv_gib is None else round(r.predicted_kv_gib, 3),
            "kvGibReported": r.reported.kv_cache_gib,
            "kvTokensPredicted": r.predicted.kv_capacity_tokens if r.predicted else None,
            "kvTokensReported": r.reported.kv_cache_tokens,
            "kvError": None if r.kv_error is None else round(r.kv_error, 4),
            "kvErrorGib": None if r.kv_error_gib is None else round(r.kv_error_gib, 3),
            "withinBounds": r.kv_within_bounds,
            "skipped": r.skipped,
        }
        for r in rows
    ]
    groups = _calibration_groups(rows)
    missed = missed_targets([r for r in rows if r.split is Split.HELD_OUT])
    for miss in missed:
        click.echo(f"held-out split misses a target: {miss}", err=True)
    status = EXIT_DOES_NOT_FIT if missed else EXIT_FITS
    if output != "table":
        _emit({"rows": records, "summaries": {name: s.__dict__ for name, s in groups.items()}}, output)
        return status
    click.echo(calibration_markdown(records, groups))
    return status


def _calibration_groups(rows: list[CalibrationRow]) -> dict[str, Summary]:
    """Summaries per split, per engine generation within each split, and over all rows."""
    from vramgate.calibration import Split, summarize, summarize_by

    groups: dict[str, Summary] = {}
    for split in (Split.HELD_OUT, Split.FIT):
        members = [r for r in rows if r.split is split]
        groups[str(split)] = summarize(members)
        by_generation = summarize_by(members, lambda r: r.generation)
        groups |= {f"{split} · {name}": by_generation[name] for name in sorted(by_generation)}
    groups["all rows"] = summarize(rows)
    return groups


def _cell(value: Any, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _row_table(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| row | engine | model | GPU | TP | weights GiB pred / log | err "
        "| KV GiB pred / log | KV tokens pred / log | KV err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        head = f"| {r['row']} | {r['generation']} | {r['model']} | {r['gpu']} | {r['tp']} "
        if r["skipped"]:
            lines.append(f"{head}| skipped: {r['skipped']} |||||")
            continue
        lines.append(
            f"{head}| {_cell(r['weightsGibPredicted'], '.2f')} / {_cell(r['weightsGibReported'], '.2f')} "
            f"| {_cell(r['weightsError'], '+.1%')} "
            f"| {_cell(r['kvGibPredicted'], '.2f')} / {_cell(r['kvGibReported'], '.2f')} "
            f"| {_cell(r['kvTokensPredicted'], ',')} / {_cell(r['kvTokensReported'], ',')} "
            f"| {_cell(r['kvError'], '+.1%')}{'' if r['withinBounds'] is not False else ' ✗'} |"
        )
    return lines


def calibration_markdown(records: list[dict[str, Any]], groups: dict[str, Summary]) -> str:
    """The calibration report as Markdown, the form the README carries: each split's rows with signed
    errors (prediction / log - 1; ✗ marks a row outside 15% and 0.5 GiB), then the summaries."""
    from vramgate.calibration import Split

    lines: list[str] = []
    for split in (Split.HELD_OUT, Split.FIT):
        members = [r for r in records if r["split"] == str(split)]
        sources = len({r["source"] for r in members})
        lines += [f"**{split.capitalize()} split**: {len(members)} rows from {sources} sources.", ""]
        lines += [*_row_table(members), ""]
    lines += [
        "| group | KV rows | KV median abs err | KV median signed | KV worst over | KV worst under "
        "| KV over +1% | outside 15% / 0.5 GiB | weights rows | weights max abs err |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in groups.items():
        kv = s.kv_rows > 0
        lines.append(
            f"| {name} | {s.kv_rows} | {_cell(s.kv_median_error if kv else None, '.1%') or '—'} "
            f"| {_cell(s.kv_median_signed_error if kv else None, '+.1%') or '—'} "
            f"| {_cell(s.kv_max_over_prediction, '+.1%') or 'none'} "
            f"| {_cell(s.kv_max_under_prediction, '+.1%') or 'none'} "
            f"| {', '.join(s.kv_rows_over_promising) or 'none'} "
            f"| {', '.join(s.kv_rows_out_of_bounds) or 'none'} "
            f"| {s.weights_rows} | {_cell(s.weights_max_error if s.weights_rows else None, '.1%') or '—'} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# errors


def bad_input_line(error: Exception) -> str | None:
    """The one stderr line for bad input a command raised (`vramgate.entry` prints it); None otherwise."""
    if isinstance(error, SizingError):
        return str(error)
    # Only the commands that load the spec models can raise pydantic's errors; `plan` never imports it.
    validation_error = getattr(sys.modules.get("pydantic"), "ValidationError", None)
    if validation_error is not None and isinstance(error, validation_error):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        return f"{where}: {first['msg']}"
    return None
