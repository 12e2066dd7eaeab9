"""vramgate as users run it: its image, installed with the chart, on a real node (shared by the in-cluster
e2e tests and the demo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from support.controlplane import find_assets_dir
from support.images import NodeImages, build_node_images

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vramgate"
RELEASE = "vramgate"
SYSTEM_NAMESPACE = "vramgate-system"
VERSION = "0.1.0"  # the chart's appVersion and the package's version: the image's label


def images() -> NodeImages:
    """Every image the node runs: pause, the operator (the repository's Dockerfile), the stand-in."""
    return build_node_images(find_assets_dir(required=("pause",)) / "pause", VERSION)


def allowed_images(built: NodeImages) -> list[str]:
    """The chart's default image policy (the engines' official images) plus the stand-in."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["imagePolicy"]["allowedRepositories"]
    return [*defaults, f"docker.io/{built.standin.repository}"]


def helm_values(built: NodeImages, *extra: str) -> list[str]:
    """`helm install` arguments for the locally built image (never pulled) and the stand-in allowed."""
    return [
        f"--set=image.repository={built.operator.repository}",
        f"--set=image.tag={built.operator.tag}",
        "--set=image.pullPolicy=Never",
        f"--set=imagePolicy.allowedRepositories={{{','.join(allowed_images(built))}}}",
        *extra,
    ]


def server_resource(
    example: Path, built: NodeImages, *, name: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """An example LLMDeployment that runs the stand-in server in place of its engine's image."""
    resource: dict[str, Any] = yaml.safe_load(example.read_text())
    runtime = resource["spec"].setdefault("runtime", {})
    runtime["image"] = built.standin.reference
    if env:
        runtime["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if name:
        resource["metadata"]["name"] = name
    return resource


def as_json(resource: dict[str, Any]) -> str:
    return json.dumps(resource)
