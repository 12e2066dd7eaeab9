"""The hostile corpus (tests/corpus/hostile.yaml): each case as the YAML file a user would apply.

Both runs read these same files: the e2e suite applies them with kubectl against the API server and
the operator, the offline suite passes them to `vramgate check -f`, so the two can only differ where
the decision does.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "hostile.yaml"
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Values too long to write in the corpus file itself.
PLACEHOLDERS: dict[str, Any] = {
    "@@64KIB@@": "x" * 65536,
    "@@65 ARGS@@": ["--seed=1"] * 65,
    "@@65 ENV@@": [{"name": f"VARIABLE_{index}", "value": "x"} for index in range(65)],
    "@@NAME 64@@": "n" * 64,
    "@@NAME 63@@": "n" * 63,
    "@@NAME 47@@": "n" * 47,
}


@dataclass(frozen=True)
class Case:
    """One hostile manifest and what must happen to it."""

    name: str
    text: str  # the manifest as a YAML file
    before: str | None  # a manifest applied (and Deployed) first: the case is then an update
    refused: str | None  # text the refusal must contain (a field path or a reason); None: Deployed
    online: str | None  # the same, where the API server or kubectl words it otherwise

    @property
    def resource_name(self) -> str:
        found = yaml.safe_load(self.text)["metadata"]["name"]
        return str(found)


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        if value in PLACEHOLDERS:
            return copy.deepcopy(PLACEHOLDERS[value])
        for marker, replacement in PLACEHOLDERS.items():
            if isinstance(replacement, str):
                value = value.replace(marker, replacement)
        return value
    if isinstance(value, list):
        return [_expand(item) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    return value


def _set(resource: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = resource
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _manifest(base: dict[str, Any], name: str, changes: dict[str, Any], raw: dict[str, str]) -> str:
    resource = copy.deepcopy(base)
    resource["metadata"]["name"] = name
    for path, value in changes.items():
        _set(resource, path, _expand(value))
    for index, path in enumerate(raw):
        _set(resource, path, f"RAW_VALUE_{index}")
    text = yaml.safe_dump(resource, sort_keys=False, allow_unicode=True, width=1 << 20)
    for index, value in enumerate(raw.values()):
        text = text.replace(f"RAW_VALUE_{index}", value)
    return text


def load_cases() -> list[Case]:
    corpus = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    cases = []
    for entry in corpus["cases"]:
        name = entry["name"]
        assert DNS_1035_LABEL.fullmatch(name), f"case names are resource names: {name!r}"
        expect = entry["expect"]
        refused = None if expect == "deployed" else expect["refused"]
        changes = entry.get("set", {})
        cases.append(
            Case(
                name=name,
                text=_manifest(corpus["base"], name, changes, entry.get("raw", {})),
                before=_manifest(corpus["base"], name, entry["before"], {}) if "before" in entry else None,
                refused=refused,
                online=None if expect == "deployed" else expect.get("online"),
            )
        )
    return cases


def write_cases(cases: list[Case], folder: Path) -> dict[str, Path]:
    """Each case's manifest as a file named after it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        paths[case.name] = folder / f"{case.name}.yaml"
        paths[case.name].write_text(case.text, encoding="utf-8")
    return paths
