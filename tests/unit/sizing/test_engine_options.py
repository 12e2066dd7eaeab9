"""extraArgs read the way each engine's parser reads them: every spelling of a flag the plan owns is
found (argparse prefixes, `_` for `-`, short forms with attached values, clap's clustered shorts and
environment variables), and options the plan leaves alone pass."""

from __future__ import annotations

import pytest

from vramgate.sizing.engines import Engine, definition
from vramgate.sizing.engines.options import GovernedFlag, PlannedFlag


def found(engine: Engine, *arguments: str) -> list[tuple[str, str | None]]:
    return [
        (argument.spelling, argument.value)
        for argument in definition(engine).command_line.recognise(list(arguments))
    ]


@pytest.mark.parametrize(
    ("arguments", "spelling"),
    [
        (["--gpu-memory-utilization=0.99"], "--gpu-memory-utilization"),
        (["--gpu_memory_utilization=0.99"], "--gpu-memory-utilization"),  # vLLM reads _ as -
        (["--gpu-memory-util=0.99"], "--gpu-memory-utilization"),  # an argparse abbreviation
        (["-tp", "4"], "-tp"),
        (["-tp=4"], "-tp"),
        (["-t", "4"], "-tp"),  # argparse abbreviates single-dash options too
        (["-qfp8"], "-q"),  # a one-letter short option with its value attached
        (["--kv-cache-memory=8G"], "--kv-cache-memory-bytes"),
        (["--num_gpu_blocks_override", "100"], "--num-gpu-blocks-override"),
        (["--max-model-len.x=1"], "--max-model-len"),  # a JSON field of the option
        (["--port=9999"], "--port"),
        (["--m=x"], "--model"),  # ambiguous to argparse: the engine would not start
        (
            ["--max-cudagraph-capture-size", "1024"],
            "--max-cudagraph-capture-size",
        ),  # more graphs than planned
        (["--cudagraph_capture_sizes=[1,2,4,8]"], "--cudagraph-capture-sizes"),
        (["-O3"], "-O"),  # FlexibleArgumentParser's shorthand for the compilation config
        (["-O.cudagraph_capture_sizes=[1,512]"], "-O"),
        (["--compilation-config", '{"max_capture_size": 1024}'], "--compilation-config"),
        (["--hf-overrides.num_hidden_layers=200"], "--hf-overrides"),  # another model shape
        (["-dpl", "2"], "-dpl"),
        (["--hel"], "--help"),  # prints and exits: a crash loop
        # Later releases' aliases and options (engine/arg_utils.py@v0.12.0 to @v0.34.0)
        (["--device-memory-utilization=0.99"], "--device-memory-utilization"),  # the fraction's alias
        (["--device_memory_util", "0.99"], "--device-memory-utilization"),
        (["-cc", '{"cudagraph_capture_sizes": [1, 512]}'], "-cc"),
        (["--optimization-level=3"], "--optimization-level"),
        (["-ep"], "-ep"),
        (["-sc", '{"method": "ngram"}'], "-sc"),
        (["--spec-model=x"], "--spec-model"),
        (["--performance-mode=throughput"], "--performance-mode"),  # doubles the unset batch limits
        (["--attention-backend", "FLASHINFER"], "--attention-backend"),
        (["-ac.flash_attn_max_num_splits_for_cuda_graph=64"], "-ac"),  # a JSON field, as -cc.key=v
        (["-cc.cudagraph_capture_sizes=[1,512]"], "-cc"),
        (["--moe-backend=emulation"], "--moe-backend"),
        (["--kv-cache-dtype-skip-layers", "sliding_window"], "--kv-cache-dtype-skip-layers"),
        (["--kv-offloading-size=8"], "--kv-offloading-size"),
        (["--offload-params", "all"], "--offload-params"),
        (["-pcp", "2"], "-pcp"),
        (["--nnodes=2"], "--nnodes"),
        (["-n2"], "-n"),
        (["--device-ids=0"], "--device-ids"),
        (["--quantization-config", "{}"], "--quantization-config"),
        (["--no-enable-extensible-kv-cache"], "--no-enable-extensible-kv-cache"),  # 0.34.0's sizing
        (["--max-logprobs=-1"], "--max-logprobs"),  # 0.34.0's sizing warm-up asks that many
        (["--mm-encoder-only"], "--mm-encoder-only"),  # no language model: no generation request served
        (["--help=serve"], "--help"),
    ],
)
def test_every_vllm_spelling_of_a_governed_flag_is_found(arguments: list[str], spelling: str) -> None:
    assert found(Engine.VLLM, *arguments)[0][0] == spelling


def test_options_the_plan_leaves_alone_pass() -> None:
    command_line = definition(Engine.VLLM).command_line
    assert command_line.recognise(["--disable-log-requests", "--served-model-name=x", "--seed", "-1"]) == []
    assert definition(Engine.TGI).command_line.recognise(["--max-total=1", "-e", "--json-output"]) == []


def test_a_switch_that_passes_alone_is_found_with_the_value_it_is_given() -> None:
    """`--enable-chunked-prefill=false` turns chunked prefill off where the flag takes a value (vLLM 0.6
    to 0.8) and stops the server where it takes none; a word after a switch is its value the same way."""
    assert found(Engine.VLLM, "--enable-chunked-prefill", "--enforce", "--seed", "1") == [
        ("--enable-chunked-prefill", None),
        ("--enforce-eager", None),
    ]
    assert found(Engine.VLLM, "--enable_chunked_prefill=false", "--enable-prefix-caching", "0") == [
        ("--enable-chunked-prefill", "false"),
        ("--enable-prefix-caching", "0"),
    ]


def test_planned_flags_carry_their_value_from_either_form() -> None:
    assert found(Engine.VLLM, "--max-num-batched-tokens", "4096", "--block_size=32") == [
        ("--max-num-batched-tokens", "4096"),
        ("--block-size", "32"),
    ]


def test_sglang_is_plain_argparse() -> None:
    assert found(Engine.SGLANG, "--tp", "2")[0][0] == "--tp-size"
    assert found(Engine.SGLANG, "--cuda-graph-bs", "1", "512")[0][0] == "--cuda-graph-bs"
    assert found(Engine.SGLANG, "--json-model-override", "{}")[0][0] == "--json-model-override-args"
    assert found(Engine.SGLANG, "--model=x")[0][0] == "--model-path"  # an alias of the same flag
    assert found(Engine.SGLANG, "--mem_fraction_static=0.9") == [], "SGLang does not read _ as -"


def test_tgi_takes_long_options_whole_clusters_shorts_and_reads_the_environment() -> None:
    assert found(Engine.TGI, "--cuda-memory-fraction=0.99") == [("--cuda-memory-fraction", "0.99")]
    assert found(Engine.TGI, "-ep9000")[0][0] == "-p"
    assert found(Engine.TGI, "--cuda-memory") == [], "clap infers no long options"
    variables = definition(Engine.TGI).command_line.environment_variables()
    assert variables["CUDA_MEMORY_FRACTION"].spellings == ("--cuda-memory-fraction",)
    assert "MAX_BATCH_PREFILL_TOKENS" in variables and "PORT" in variables
    assert "SPECULATE" in variables and not {"HELP", "VERSION"} & variables.keys(), "clap's own: no env"
    assert [found(Engine.TGI, option)[0][0] for option in ("-h", "-eV", "--version")] == [
        "-h",
        "-V",
        "--version",
    ]
    assert definition(Engine.VLLM).command_line.environment_variables() == {}


@pytest.mark.parametrize("engine", list(Engine))
def test_every_flag_the_plan_writes_is_governed_or_planned(engine: Engine) -> None:
    """The argument builder's spellings and the refused ones come from one engine module: a plan flag
    missing from the table would let extraArgs undo the plan."""
    engine_definition = definition(engine)
    spellings = {s for flag in engine_definition.command_line.flags() for s in flag.spellings}
    written = {value for value in vars(engine_definition.flags).values() if value is not None}
    written.add(engine_definition.runtime.port_flag)
    assert written <= spellings
    for flag in engine_definition.command_line.flags():
        assert isinstance(flag, GovernedFlag | PlannedFlag) and flag.spellings


def test_clap_refuses_a_repeated_option_where_the_plan_absorbs_a_planned_one() -> None:
    command_line = definition(Engine.TGI).command_line
    repeat = ["--json-output", "--max-waiting-tokens=1", "--max-waiting-tokens", "2"]
    assert command_line.repeated(repeat) == (2, "--max-waiting-tokens")
    allowed = ["--max-batch-prefill-tokens=1", "--max-batch-prefill-tokens=2", "--cors-allow-origin=a"] * 2
    assert command_line.repeated(allowed) is None
    assert definition(Engine.VLLM).command_line.repeated(["--seed=1", "--seed=2"]) is None, (
        "argparse: last wins"
    )
