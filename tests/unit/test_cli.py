"""The command line: outputs, stable JSON keys, exit statuses, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vramgate.decision import decide
from vramgate.entry import main

STABLE_KEYS = {
    "fits",
    "gpuType",
    "gpuCount",
    "memoryFraction",
    "maxBatch",
    "maxModelLen",
    "weightsBytes",
    "weightsBytesPerGpu",
    "kvBytesPerToken",
    "kvCacheBytes",
    "kvCapacityTokens",
    "overheadBytes",
    "requiredBytes",
    "gpuMemoryBytes",
    "engineArgs",
    "alternatives",
    "reasons",
}
FALCON_A10G = [
    "plan",
    "--model",
    "tiiuae/falcon-7b",
    "--max-seq-len",
    "1000",
    "--concurrency",
    "100",
    "--gpu",
    "A10G",
]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_falcon_7b_on_a10g_shows_the_real_mqa_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(FALCON_A10G, capsys)
    assert status == 0
    assert "FITS" in out and "MQA" in out and "8.0 KiB" in out
    assert "--gpu-memory-utilization=" in out
    assert "every GPU type" in out and "H100-80GB" in out


def test_the_cuda_graph_row_says_when_the_figure_bounds_the_engines_own_estimate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = (
        " ".join(run([*FALCON_A10G, "--engine-version", version], capsys)[1].split())
        for version in ("0.19.0", "0.20.0")
    )
    assert "CUDA graphs 0.50 GiB per GPU, outside the fraction" in old
    assert "inside the fraction (a bound on the engine's own estimate)" in new
    assert "the plan counts a bound on that estimate" in new  # the assumptions say how


def test_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run([*FALCON_A10G, "--output", "json"], capsys)
    data = json.loads(out)
    assert status == 0
    assert data.keys() >= STABLE_KEYS
    assert data["kvBytesPerToken"] == 8192
    assert set(data["engineArgs"]) == {"vllm", "tgi", "sglang"}


def test_yaml_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run([*FALCON_A10G, "-o", "yaml"], capsys)
    assert status == 0 and "gpuType: A10G" in out


def test_seed_article_example(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "plan",
        "--layers",
        "32",
        "--hidden-size",
        "4544",
        "--weights-gib",
        "14",
        "--gpu-memory-gib",
        "24",
        "--overhead-gib",
        "0",
        "--memory-fraction",
        "1",
        "--block-size",
        "1",
        "--max-seq-len",
        "1000",
        "--concurrency",
        "100",
        "--gpu",
        "A10G",
        "-o",
        "json",
    ]
    status, out, _ = run(args, capsys)
    data = json.loads(out)
    assert status == 1  # 100 x 1000 tokens do not fit
    assert data["kvCacheBytes"] / 2**30 == pytest.approx(54.1687, abs=1e-4)
    assert data["maxBatch"] == 18


def test_does_not_fit_exits_1_with_reason(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "plan",
        "--model",
        "meta-llama/Llama-3.1-70B-Instruct",
        "--gpu",
        "L4",
        "--gpu-count",
        "1",
        "--max-seq-len",
        "8192",
        "--concurrency",
        "32",
    ]
    status, out, _ = run(args, capsys)
    assert status == 1
    assert "DOES NOT FIT" in out and "why:" in out and "would fit:" in out


def falcon(*extra: str, length: str = "10", concurrency: str = "1") -> list[str]:
    return [
        "plan",
        "--model",
        "tiiuae/falcon-7b",
        "--max-seq-len",
        length,
        "--concurrency",
        concurrency,
        *extra,
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["plan", "--model", "falcon-7b", "--max-seq-len", "10", "--concurrency", "1"],
            "did you mean tiiuae/falcon-7b",
        ),
        (falcon(length="0"), "--max-seq-len"),
        (falcon(length="1000000000000"), "--max-seq-len"),
        (falcon(concurrency="1000000000"), "--concurrency"),
        (falcon(concurrency="-5"), "--concurrency"),
        (falcon(length="abc"), "not a valid integer"),
        (falcon("--precision", "int3"), "--precision"),
        (falcon("--engine", "ollama"), "--engine"),
        (falcon("--gpu", "A11G"), "did you mean A10G"),
        (falcon("--max-memory-fraction", "1.5"), "--max-memory-fraction"),
        (falcon("--layers", "5000"), "num_layers: Input should be less than or equal to 1024"),
        (falcon("--params", "inf"), "--params"),
        (falcon("--kv-heads", "7"), "7 KV heads do not divide 71 attention heads"),
        (falcon("--pipeline-parallel", "64"), "64 pipeline stages cannot split tiiuae/falcon-7b's 32 layers"),
        (falcon("--gpu-memory-gib", "nan"), "Invalid value for '--gpu-memory-gib': 'nan' is not a number"),
        (falcon("--max-memory-fraction", "NaN"), "'--max-memory-fraction': 'NaN' is not a number"),
        (falcon("--weights-gib", "inf"), "--weights-gib"),
        (falcon("--params", "1e400B"), "--params"),
        (["plan", "--max-seq-len", "10", "--concurrency", "1"], "give a catalog id or config.json"),
        (
            [
                "plan",
                "--layers",
                "2",
                "--hidden-size",
                "64",
                "--params",
                "lots",
                "--max-seq-len",
                "1",
                "--concurrency",
                "1",
            ],
            "--params",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(args, capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_broken_config_json_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 64, "num_hidden_layers": 2}')
    status, _, err = run(
        ["plan", "--model", str(config), "--max-seq-len", "10", "--concurrency", "1"], capsys
    )
    assert status == 2 and "missing 'num_attention_heads'" in err


def test_a_config_json_that_is_not_text_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(b'{"hidden_size": 64, "\xf7": 1}')
    status, _, err = run(
        ["plan", "--model", str(config), "--max-seq-len", "10", "--concurrency", "1"], capsys
    )
    assert status == 2 and "not UTF-8 text (byte 0xf7 at offset 21)" in err and err.count("\n") == 1


def test_catalog_listings(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["models", "-o", "json"], capsys)
    models = json.loads(out)
    assert status == 0 and len(models) >= 25
    assert {"id", "parameters", "attention", "source"} <= models[0].keys()
    status, out, _ = run(["gpus", "-o", "json"], capsys)
    gpus = json.loads(out)
    assert status == 0 and {"name", "product", "memoryMiB", "pricePerHour"} <= gpus[0].keys()
    status, out, _ = run(["gpus"], capsys)
    assert "NVIDIA-A10G" in out


def test_kubectl_plugin_entry_point_is_installed() -> None:
    plugin = Path(sys.executable).parent / "kubectl-vramgate"
    result = subprocess.run([str(plugin), "gpus", "-o", "json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "A10G" in result.stdout
    bad = subprocess.run(
        [str(plugin), "plan", "--model", "nope", "--max-seq-len", "1", "--concurrency", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("kubectl vramgate: error:")


EXAMPLES = Path(__file__).parents[2] / "examples"


def test_check_allows_a_fitting_manifest_and_refuses_an_oversized_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(["check", "-f", str(EXAMPLES / "falcon-7b-a10g.yaml")], capsys)
    assert status == 0 and ": ok: LLMDeployment falcon-7b fits: 1 x A10G" in out
    status, out, _ = run(
        [
            "check",
            "-f",
            str(EXAMPLES / "falcon-7b-a10g.yaml"),
            "-f",
            str(EXAMPLES / "llama-3.1-70b-too-big.yaml"),
        ],
        capsys,
    )
    assert status == 1
    assert "refused: LLMDeployment llama-3-1-70b refused:" in out and "Nearest changes that fit" in out


def test_check_gives_the_webhooks_words(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = EXAMPLES / "llama-3.1-70b-too-big.yaml"
    _, out, _ = run(["check", "-f", str(manifest)], capsys)
    assert decide(yaml.safe_load(manifest.read_text())).message in out


def test_check_reports_the_field_of_an_invalid_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n---\n"
        "apiVersion: vramgate.dev/v1alpha1\nkind: LLMDeployment\nmetadata: {name: bad}\n"
        "spec: {model: {name: tiiuae/falcon-7b}, workload: {maxSequenceLength: 1000, concurrency: 0}}\n"
    )
    status, out, _ = run(["check", "-f", str(manifest)], capsys)
    assert status == 1 and "spec.workload.concurrency" in out


def plan_llama_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str) -> tuple[int, str]:
    """`vramgate plan` on a Llama-7B-like config.json with `extra` keys (JSON text) added or replacing:
    the exit status and stderr."""
    config = tmp_path / "config.json"
    config.write_text(
        '{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, '
        f'"vocab_size": 32000, "intermediate_size": 11008, {extra}}}'
    )
    status, _, err = run(
        ["plan", "--model", str(config), "--max-seq-len", "100", "--concurrency", "1"], capsys
    )
    return status, err


@pytest.mark.parametrize(
    ("key", "value"), [("num_hidden_layers", "1000000000000000000"), ("hidden_size", "Infinity")]
)
def test_a_hostile_config_json_is_bad_input_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    """10^18 layers once planned a memory fraction of 2.3e14; it is bounded like the inline architecture."""
    status, err = plan_llama_config(tmp_path, capsys, f'"{key}": {value}')
    assert status == 2 and f"{key}: " in err and "is not an integer from 0 to" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('"torch_dtype": 16', "torch_dtype: 16 is not a name such as bfloat16"),
        ('"num_key_value_heads": 5', "num_kv_heads: 5 KV heads do not divide 32 attention heads"),
        ('"num_local_experts": 8, "mlp_only_layers": 3', "mlp_only_layers: 3 is not a list of integers"),
        ('"num_local_experts": 8, "mlp_only_layers": [{}]', "mlp_only_layers: {} is not an integer"),
        (
            '"model_type": "gemma3", "sliding_window": 512, "sliding_window_pattern": 0',
            "sliding_window_pattern: 0 is not an integer from 1 to",
        ),
        (
            '"model_type": "qwen2", "use_sliding_window": true, "sliding_window": 512, '
            '"max_window_layers": 99',
            "max_window_layers: 99 is not an integer from 0 to 32",
        ),
        (
            '"quantization_config": {"quant_method": "gptq", "bits": -4}',
            "bits: -4 is not an integer from 1 to 16",
        ),
        ('"quantization_config": {"quant_method": "awq", "bits": "x"}', "bits: 'x' is not an integer"),
        (
            '"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"g": 5}}',
            "config_groups: 5 is not an object",
        ),
    ],
)
def test_a_config_json_value_of_the_wrong_kind_is_bad_input_not_a_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    """Each once raised (a division by zero, a type error) or planned negative bits per weight as a fit."""
    status, err = plan_llama_config(tmp_path, capsys, extra)
    assert status == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: ConfigMap\n", "no vramgate.dev LLMDeployment"),
        ("a: [b\n", "not valid YAML"),
        (b"\xff\xfe\x00k\x00i\x00n\x00d".decode("latin-1"), "not UTF-8 text (byte 0xff at offset 0)"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("kind: List\nitems: 5\n", "no vramgate.dev LLMDeployment"),
        ("--- &list {kind: List, items: [*list, {kind: List, items: x}]}\n", "no vramgate.dev LLMDeployment"),
    ],
)
def test_check_bad_files_exit_2(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_bytes(content.encode("latin-1" if "\xff" in content else "utf-8"))
    status, _, err = run(["check", "-f", str(manifest)], capsys)
    assert status == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        (b"\xf7\x00", "not a usable kubeconfig"),
        (b"", "not a usable kubeconfig"),
        (b"clusters: 5\n", "not a usable kubeconfig"),
        (
            b"clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\ncurrent-context: c\n"
            b"contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n",
            "cannot reach the cluster",
        ),
    ],
)
def test_a_kubeconfig_that_gives_no_cluster_is_bad_input(
    kubeconfig: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback from the client (a decode error, a ConfigException, a MaxRetryError)."""
    config = tmp_path / "kubeconfig"
    config.write_bytes(kubeconfig)
    status, _, err = run(
        ["check", "-f", str(EXAMPLES / "falcon-7b-a10g.yaml"), "--kubeconfig", str(config)], capsys
    )
    assert status == 2 and message in err and err.count("\n") == 1


def test_crd_command_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["crd"], capsys)
    assert status == 0
    assert out == (Path(__file__).parents[2] / "crds" / "llmdeployments.vramgate.dev.yaml").read_text()


def test_command_listing_matches_each_commands_own_help() -> None:
    from vramgate.cli import cli as commands
    from vramgate.entry import COMMANDS

    assert {name: command.get_short_help_str(200) for name, command in commands.commands.items()} == COMMANDS


def test_help_and_completion_load_no_command_code() -> None:
    """`--help` lists the commands from a table: no pydantic, sizing core or catalogs are imported."""
    probe = (
        "import sys, contextlib, io\n"
        "from vramgate.entry import main\n"
        "for argv in (['--help'], ['completion', 'bash']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'vramgate.', 'rich', 'yaml'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['vramgate.entry']"


def test_plan_as_json_loads_neither_pydantic_nor_yaml_nor_the_spec() -> None:
    """`plan -o json` is the sizing core and the JSON catalogs only: importing pydantic (and building its
    schemas) or PyYAML would cost more CPU than the planning itself."""
    probe = (
        "import sys, contextlib, io\n"
        "from vramgate.entry import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({[*FALCON_A10G, '-o', 'json']!r}) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'yaml', 'rich', 'vramgate.spec', "
        "'vramgate.calibration', 'vramgate.crd', 'vramgate.decision'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_completes_commands(capsys: pytest.CaptureFixture[str], shell: str) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "_VRAMGATE_COMPLETE" in script
    # The script calls back into the program: the callback lists commands and a command's options.
    # bash and zsh pass the index of the word being completed, fish the word itself.
    cword = "pl" if shell == "fish" else "1"
    env = {"_VRAMGATE_COMPLETE": f"{shell}_complete", "COMP_WORDS": "vramgate pl", "COMP_CWORD": cword}
    vramgate = Path(sys.executable).parent / "vramgate"
    words = subprocess.run([str(vramgate)], env=env, capture_output=True, text=True, check=False).stdout
    assert "plan" in words


def test_completion_refuses_an_unknown_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "powershell"]) == 2
    assert "'powershell' is not one of 'bash', 'zsh', 'fish'" in capsys.readouterr().err
