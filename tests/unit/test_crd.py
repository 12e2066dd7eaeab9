"""The committed CRD is the one the models generate, and it is a structural schema kubectl can explain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from vramgate.crd import CRD_NAME, custom_resource_definition, openapi_schema, render

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / f"{CRD_NAME}.yaml"


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render(), "regenerate: python -m vramgate.crd > " + str(CRD_FILE.name)


def test_schema_is_structural_every_node_typed_and_free_of_json_schema_only_keywords() -> None:
    for path, node in nodes(openapi_schema()):
        if node.get("x-kubernetes-int-or-string"):  # the one untyped node a structural schema allows
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "type" in node, path
        assert not {"ge", "le", "gt", "lt"} & node.keys(), f"{path}: a bound pydantic left unconverted"
        assert not {"$ref", "$defs", "anyOf", "allOf", "oneOf", "title"} & node.keys(), path
        assert isinstance(node.get("additionalProperties", {}), dict), path


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    undocumented = [
        path
        for path, node in nodes(openapi_schema())
        if "description" not in node
        and not path.endswith("{}")
        and not (path.endswith("[]") and node["type"] == "string")
    ]
    assert undocumented == [".metadata"]  # Kubernetes' own, and the API server forbids more than its type


def test_bounds_enums_and_typed_container_fields() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    workload = spec["workload"]["properties"]
    assert workload["concurrency"]["minimum"] == 1
    assert spec["model"]["properties"]["precision"]["enum"] == [
        "auto",
        "fp32",
        "bf16",
        "fp16",
        "fp8",
        "int8",
        "int4",
    ]
    fraction = spec["gpu"]["properties"]["maxMemoryFraction"]
    assert (fraction["minimum"], fraction["exclusiveMinimum"], fraction["maximum"]) == (0, True, 1)
    runtime = spec["runtime"]["properties"]
    quantity = runtime["resources"]["properties"]["limits"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True and quantity["minimum"] == 0
    env = runtime["env"]
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    assert set(env["items"]["properties"]) == {"name", "value", "valueFrom"}
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(openapi_schema())


def test_the_name_rule_is_checked_at_the_root() -> None:
    [rule] = openapi_schema()["x-kubernetes-validations"]
    assert "self.metadata.name" in rule["rule"] and "DNS-1035" in rule["message"]


def test_model_rules_are_cel_validations() -> None:
    model = openapi_schema()["properties"]["spec"]["properties"]["model"]
    rules = [rule["rule"] for rule in model["x-kubernetes-validations"]]
    assert "has(self.name) != has(self.architecture)" in rules


def test_names_subresource_and_printer_columns() -> None:
    crd = custom_resource_definition()
    assert crd["spec"]["names"]["shortNames"] == ["llmd"]
    [version] = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns == ["Model", "GPU", "Count", "Fraction", "MaxBatch", "Phase", "Ready", "Age"]
    assert yaml.safe_load(CRD_FILE.read_text())["metadata"]["name"] == "llmdeployments.vramgate.dev"
