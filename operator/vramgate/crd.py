"""The LLMDeployment CustomResourceDefinition, generated from the pydantic models in `vramgate.spec`.

Pydantic writes JSON Schema (2020-12); the API server wants a *structural* OpenAPI v3.0 schema: every
`$ref` inlined, no titles or `$defs`, `Optional[X]` as plain X (an omitted field; the API server prunes
nulls), exclusive bounds as OpenAPI 3.0 booleans, quantities as the int-or-string form the API server
knows, maps as `additionalProperties`. `python -m vramgate.crd > crds/llmdeployments.vramgate.dev.yaml`
regenerates the committed file; a unit test fails when the two drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from vramgate.spec import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, LLMDeployment

CRD_NAME = f"{PLURAL}.{GROUP}"
CATEGORIES = ["vramgate", "ai"]
PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Catalog id."},
    {"name": "GPU", "type": "string", "jsonPath": ".status.plan.gpuType", "description": "GPU type."},
    {
        "name": "Count",
        "type": "integer",
        "jsonPath": ".status.plan.gpuCount",
        "description": "GPUs per replica.",
    },
    {
        "name": "Fraction",
        "type": "number",
        "jsonPath": ".status.plan.memoryFraction",
        "description": "Share of each GPU's memory the engine claims.",
    },
    {
        "name": "MaxBatch",
        "type": "integer",
        "jsonPath": ".status.plan.maxBatch",
        "description": "Concurrent max-length sequences that fit.",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Operator's phase."},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The server's replicas are available.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
# JSON Schema keywords with no place in a structural schema, or no meaning to the API server.
_DROPPED_KEYWORDS = frozenset({"title", "$defs", "const"})
# Readable order in the generated file: what a node is, then its constraints, then its children.
_KEY_ORDER = {key: rank for rank, key in enumerate(("description", "type", "default", "enum"))}


class _Dumper(yaml.SafeDumper):
    """Writes repeated sub-schemas (the engine enum) out in full: anchors would puzzle a reader."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def openapi_schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of the whole resource."""
    schema = LLMDeployment.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.get("$defs", {})
    structural = _structural(schema, definitions)
    properties = structural["properties"]
    for name in ("apiVersion", "kind"):  # their values are the API server's to check, not an enum's
        properties[name] = {"description": properties[name]["description"], "type": "string"}
    properties["metadata"] = {"type": "object"}  # the API server allows nothing more here
    return structural


def _structural(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """One schema node (recursively): $refs inlined, nulls and JSON-Schema-only keywords removed."""
    if "$ref" in node:
        referenced = definitions[node["$ref"].rsplit("/", 1)[-1]]
        # The field's own description says more, in context, than the referenced class docstring.
        node = {**referenced, **{key: value for key, value in node.items() if key != "$ref"}}
    if node.get("x-kubernetes-int-or-string"):  # the one union a structural schema allows, kept whole
        return node
    if "anyOf" in node:
        branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"a union other than Optional[X] has no structural schema: {node['anyOf']}")
        node = {**branches[0], **{key: value for key, value in node.items() if key != "anyOf"}}
        if node.get("default", ...) is None:
            del node["default"]
        return _structural(node, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS or (key == "additionalProperties" and isinstance(value, bool)):
            continue
        if key == "properties":
            out[key] = {name: _structural(child, definitions) for name, child in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _structural(value, definitions)  # a list's items, a map's values
        elif key == "description":  # docstrings wrap; kubectl explain re-wraps anyway
            out[key] = " ".join(value.split())
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # JSON Schema number -> OpenAPI 3.0 flag
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        else:
            out[key] = value
    if "enum" in out:
        out["type"] = "string"
    return dict(sorted(out.items(), key=lambda item: _KEY_ORDER.get(item[0], len(_KEY_ORDER))))


def custom_resource_definition() -> dict[str, Any]:
    """The CRD object, ready for `kubectl apply`."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "vramgate"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML file committed under crds/."""
    header = "# Generated by `python -m vramgate.crd` from vramgate/spec.py. Do not edit by hand.\n"
    return header + yaml.dump(custom_resource_definition(), Dumper=_Dumper, sort_keys=False, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
