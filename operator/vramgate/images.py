"""Which container images an LLMDeployment may run: the operator's image policy.

The right to create an LLMDeployment is the right to run its image with the namespace's Secrets
referenced in its env; the policy keeps that to the repositories a cluster admin lists (by default the
official images of the three engines). References are compared in their canonical form, so
`vllm/vllm-openai` and `docker.io/vllm/vllm-openai` are one repository.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vramgate.sizing.engines import Engine, definition

DEFAULT_REGISTRY = "docker.io"


def repository(reference: str) -> str:
    """The canonical repository of an image reference: registry and path, no tag or digest
    (`vllm/vllm-openai:v0.11.0` -> `docker.io/vllm/vllm-openai`, `ubuntu` -> `docker.io/library/ubuntu`)."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    first, _, rest = name.partition("/")
    if not rest or not _is_registry(first):
        name = f"{DEFAULT_REGISTRY}/{name}"
    registry, _, path = name.partition("/")
    if registry == DEFAULT_REGISTRY and "/" not in path:
        name = f"{registry}/library/{path}"
    return name


def _is_registry(component: str) -> bool:
    """Whether a reference's first component names a registry rather than a Docker Hub namespace."""
    return "." in component or ":" in component or component == "localhost"


def _prefix(written: str) -> str:
    """A prefix in canonical form; `registry.example.com/` stays a whole registry."""
    if not written.endswith("/"):
        return repository(written)
    head = written.rstrip("/")
    return (head if _is_registry(head.split("/", 1)[0]) else repository(head)) + "/"


def official_repositories() -> tuple[str, ...]:
    """The repositories of the engines' official images, from each engine's module."""
    return tuple(repository(definition(engine).runtime.image) for engine in Engine)


def official_engine(reference: str) -> Engine | None:
    """The engine whose official image `reference` is; None for any other repository."""
    name = repository(reference)
    for engine in Engine:
        if name in (repository(official) for official in definition(engine).runtime.repositories):
            return engine
    return None


@dataclass(frozen=True)
class ImagePolicy:
    """Allowed repository prefixes: `docker.io/vllm/vllm-openai` allows that repository (any tag or
    digest); a prefix ending in `/` allows everything under it (`registry.example.com/llm/`)."""

    allowed: tuple[str, ...] = official_repositories()

    @classmethod
    def of(cls, prefixes: Iterable[str]) -> ImagePolicy:
        """A policy from prefixes as a person writes them (`vllm/vllm-openai`, `ghcr.io/team/`)."""
        return cls(tuple(_prefix(prefix) for prefix in prefixes))

    def allows(self, reference: str) -> bool:
        name = repository(reference)
        return any(
            name.startswith(prefix) if prefix.endswith("/") else name == prefix for prefix in self.allowed
        )

    def refusal(self, reference: str) -> str | None:
        """Why `reference` may not run, naming the policy; None when it may."""
        if self.allows(reference):
            return None
        return (
            f"{reference!r} ({repository(reference)}) is not allowed by the operator's image policy "
            f"(VRAMGATE_ALLOWED_IMAGES, chart value imagePolicy.allowedRepositories), which allows: "
            f"{', '.join(self.allowed)}"
        )
