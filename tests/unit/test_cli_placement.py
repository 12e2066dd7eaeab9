"""`vramgate plan` and `check` on a cluster's nodes: the same inventory and placement as the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vramgate.entry import main

REPOSITORY = Path(__file__).resolve().parents[2]
NODES = REPOSITORY / "examples" / "cluster" / "nodes.yaml"
LLAMA_8B = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-seq-len", "8192"]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    status = main([*args, "-o", "json"])
    return status, json.loads(capsys.readouterr().out)


def test_plan_with_nodes_chooses_only_among_present_types(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = run_json(capsys, *LLAMA_8B, "--concurrency", "16", "--nodes", str(NODES))
    assert status == 0 and data["gpuType"] in ("A10G", "L4")
    assert {a["gpuType"] for a in data["alternatives"]} == {"A10G", "L4", "A100-40GB-MIG-3g.20gb"}
    placement = data["placement"]
    assert isinstance(placement, dict)
    assert placement["mode"] == "cluster"
    assert placement["inventory"] == (
        "1 node of L4 (1 of 1 GPUs free), 2 nodes of A10G (4 of 8 GPUs free), "
        "1 node of A100-40GB-MIG-3g.20gb (2 of 2 instances free)"
    )
    assert placement["gpuType"] == data["gpuType"] and placement["skipped"] == []


def test_without_nodes_the_cli_keeps_catalog_placement(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = run_json(capsys, *LLAMA_8B, "--concurrency", "16")
    assert status == 0 and "placement" not in data
    assert len({a["gpuType"] for a in data["alternatives"]}) > 2


def test_a_pinned_type_the_cluster_lacks_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, data = run_json(
        capsys, *LLAMA_8B, "--concurrency", "16", "--gpu", "H100-80GB", "--nodes", str(NODES)
    )
    assert status == 1 and data["fits"] is False
    refusal = data["placement"]["refusal"]
    assert refusal.startswith("the cluster has no schedulable node of H100-80GB")


def test_check_with_nodes_refuses_naming_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "big.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "vramgate.dev/v1alpha1",
                "kind": "LLMDeployment",
                "metadata": {"name": "big", "namespace": "team-a"},
                "spec": {
                    "model": {"name": "meta-llama/Llama-3.1-70B-Instruct"},
                    "workload": {"maxSequenceLength": 8192, "concurrency": 32},
                },
            }
        )
    )
    assert main(["check", "-f", str(manifest), "--nodes", str(NODES)]) == 1
    out = capsys.readouterr().out
    assert "refused: the cluster has 1 node of L4 (1 of 1 GPUs free), 2 nodes of A10G" in out


def test_a_file_without_nodes_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "nodes.yaml"
    empty.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    assert main([*LLAMA_8B, "--concurrency", "1", "--nodes", str(empty)]) == 2
    assert "no Node objects" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("manifest", "nodes"),
    [("qwen3-0.6b-mig.yaml", "nodes.yaml"), ("deepseek-v3-multinode.yaml", "h100-nodes.yaml")],
)
def test_the_cluster_examples_fit_their_clusters(
    manifest: str, nodes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = REPOSITORY / "examples" / "cluster"
    assert main(["check", "-f", str(cluster / manifest), "--nodes", str(cluster / nodes)]) == 0
    assert ": ok: " in capsys.readouterr().out
