"""The LLMDeployment resource as pydantic models: the user's spec, the operator's status.

These models are the one source of truth for the resource: the CRD schema is generated from them
(`vramgate.crd`), the admission webhook and the CLI validate with them, and `to_plan_request` turns a
valid spec into the sizing core's `PlanRequest`. Every error names the field path a user would fix
(`spec.workload.maxSequenceLength`), never a Python location.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from vramgate.sizing import (
    Engine,
    KvCacheDtype,
    ModelArchitecture,
    PlanRequest,
    Precision,
    SizingError,
    find_model,
    gpu_catalog,
)
from vramgate.sizing.architecture import SHAPE_LIMITS
from vramgate.sizing.engines import definition
from vramgate.sizing.engines.base import LATEST_PATCH, parse_version
from vramgate.sizing.engines.options import (
    GPU_VISIBILITY_VARIABLES,
    MEMORY_VARIABLES,
    GovernedFlag,
    OptionSyntax,
    PlannedFlag,
)
from vramgate.sizing.errors import OutOfBoundsError
from vramgate.sizing.planner import (
    DEFAULT_MAX_MEMORY_FRACTION,
    MAX_CONCURRENCY,
    MAX_GPUS_PER_REPLICA,
    MAX_SEQUENCE_TOKENS,
)

GROUP = "vramgate.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SHORT_NAME = "llmd"


@dataclass(frozen=True)
class Rule:
    """An invariant across fields, checked twice from one definition: by the API server (as CEL in the
    generated CRD) and by pydantic (so the CLI, which never meets an API server, refuses the same)."""

    cel: str
    message: str
    holds: Callable[[Any], bool]


def _validations(*rules: Rule) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": rule.cel, "message": rule.message} for rule in rules]}


def _check(model: Any, rules: tuple[Rule, ...]) -> None:
    for rule in rules:
        if not rule.holds(model):
            raise ValueError(rule.message)


# Kubernetes' own rules for the strings a spec hands on to the Deployment and Service, as regular
# expressions both RE2 (the API server) and Python read the same way.
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
C_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
POD_FIELD_PATH = (
    r"^(metadata\.(name|namespace|uid)|spec\.(nodeName|serviceAccountName)|status\.(hostIPs?|podIPs?)"
    r"|metadata\.(labels|annotations)\['([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?'\])$"
)
# A container image reference (the distribution grammar): [registry[:port]/]path[:tag][@sha256:digest].
IMAGE_REFERENCE = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
# A non-negative Kubernetes quantity (16Gi, 500m, 2, 1e3), at most 18 digits so it stays an int64.
QUANTITY = r"^\+?([0-9]{1,18}(\.[0-9]{0,9})?|\.[0-9]{1,9})([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]{1,2})?$"
MAX_QUANTITY_INTEGER = 2**53 - 1
MAX_NAME_LENGTH = 63  # the resource's name names its Service: a DNS-1035 label
MAX_IMAGE_LENGTH = 512
MAX_ARG_LENGTH = 4096
MAX_ENV_VALUE_LENGTH = 32768
MAX_LIST_ITEMS = 64
CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_SUFFIX_MULTIPLIERS = {
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    **{
        suffix: Decimal(1024) ** power
        for power, suffix in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
}


def _integral(value: object) -> object:
    """The API server takes 100.0 for an integer (JSON has one number type), never "100" or true."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as the API server checks one: no coercion from strings or booleans. Bounds of an optional
# one go before INTEGRAL (`Annotated[StrictInt, Field(ge=1), INTEGRAL]`), or pydantic leaves them out
# of the JSON schema.
INTEGRAL = BeforeValidator(_integral)
Integer = Annotated[StrictInt, INTEGRAL]


def quantity_value(quantity: int | str) -> Decimal:
    """The number a Kubernetes quantity stands for (`16Gi` -> 17179869184); it must match QUANTITY."""
    if isinstance(quantity, int):
        return Decimal(quantity)
    match = re.fullmatch(r"\+?([0-9.]+)(.*)", quantity)
    if match is None:
        raise ValueError(f"{quantity!r} is not a quantity")
    number, suffix = Decimal(match[1]), match[2]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIX_MULTIPLIERS[suffix]


def _valid_quantity(value: int | str) -> int | str:
    if isinstance(value, int) and not 0 <= value <= MAX_QUANTITY_INTEGER:
        raise ValueError(f"{value} is outside 0 to {MAX_QUANTITY_INTEGER}")
    if isinstance(value, str) and not re.fullmatch(QUANTITY, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (such as 500m, 16Gi or 2)")
    return value


Quantity = Annotated[
    Integer | StrictStr,
    AfterValidator(_valid_quantity),
    # The API server's form of an int-or-string quantity; the bounds apply to each kind it allows.
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "maximum": MAX_QUANTITY_INTEGER,
            "pattern": QUANTITY,
            "maxLength": 32,
        }
    ),
]


class ContainerResourceField(StrEnum):
    """What a resourceFieldRef may expose."""

    LIMITS_CPU = "limits.cpu"
    LIMITS_MEMORY = "limits.memory"
    LIMITS_EPHEMERAL_STORAGE = "limits.ephemeral-storage"
    REQUESTS_CPU = "requests.cpu"
    REQUESTS_MEMORY = "requests.memory"
    REQUESTS_EPHEMERAL_STORAGE = "requests.ephemeral-storage"


class Divisor(StrEnum):
    """Units a resourceFieldRef may divide by (Kubernetes allows no others)."""

    MILLI = "1m"
    ONE = "1"
    KILO = "1k"
    MEGA = "1M"
    GIGA = "1G"
    TERA = "1T"
    PETA = "1P"
    EXA = "1E"
    KIBI = "1Ki"
    MEBI = "1Mi"
    GIBI = "1Gi"
    TEBI = "1Ti"
    PEBI = "1Pi"
    EXBI = "1Ei"


_DIVISOR_RULES = (
    Rule(
        "!has(self.divisor) || (self.resource.endsWith('.cpu') ? self.divisor in ['1m', '1'] "
        ": self.divisor != '1m')",
        "divisor must be 1m or 1 for cpu, and 1 or larger for memory and ephemeral-storage",
        lambda r: (
            r.divisor is None
            or (r.divisor in ("1m", "1") if r.resource.endswith(".cpu") else r.divisor != "1m")
        ),
    ),
)
_ENV_SOURCE_RULES = (
    Rule(
        "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
        "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
        "set exactly one of secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef",
        lambda v: (
            [v.secret_key_ref, v.config_map_key_ref, v.field_ref, v.resource_field_ref].count(None) == 3
        ),
    ),
)
_ENV_RULES = (
    Rule(
        "!has(self.valueFrom) || !has(self.value) || size(self.value) == 0",
        "set value or valueFrom, not both",
        lambda e: e.value_from is None or not e.value,
    ),
)


def _named_resources(field: str) -> Rule:
    return Rule(
        f"!has(self.{field}) || self.{field}.all(k, k in {list(CONTAINER_RESOURCES)!r})",
        f"{field} may name {', '.join(CONTAINER_RESOURCES)}; GPUs (nvidia.com/gpu) come from the plan: "
        "set spec.gpu.count",
        lambda r: all(key in CONTAINER_RESOURCES for key in getattr(r, field) or {}),
    )


_RESOURCE_RULES = (
    _named_resources("requests"),
    _named_resources("limits"),
    Rule(
        "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
        "quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
        "each request must be at most its limit",
        lambda r: all(
            quantity_value(value) <= quantity_value(r.limits[key])
            for key, value in (r.requests or {}).items()
            if key in (r.limits or {})
        ),
    ),
)
NAME_RULE = Rule(
    f"!has(self.metadata.name) || (size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
    f"self.metadata.name.matches('{DNS_1035_LABEL}'))",
    f"metadata.name must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters (lowercase letters, "
    "digits and '-', starting with a letter, ending with a letter or digit): it names the Service",
    lambda metadata: (
        not isinstance(metadata, Mapping)
        or "name" not in metadata
        or (
            isinstance(metadata["name"], str)
            and len(metadata["name"]) <= MAX_NAME_LENGTH
            and re.fullmatch(DNS_1035_LABEL, metadata["name"]) is not None
        )
    ),
)


class _Schema(BaseModel):
    """camelCase on the wire (as Kubernetes users write it), unknown fields refused with their path."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, use_enum_values=False
    )


class WeightDtype(StrEnum):
    """The dtype an inline architecture's checkpoint is stored in."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


_ARCHITECTURE_RULES = (
    Rule(
        "self.attentionHeads % self.kvHeads == 0",
        "attentionHeads must be a multiple of kvHeads (each KV head serves a whole group of query heads)",
        lambda a: a.attention_heads % a.kv_heads == 0,
    ),
    Rule(
        "has(self.headDim) || self.hiddenSize % self.attentionHeads == 0",
        "hiddenSize must be a multiple of attentionHeads unless headDim is set",
        lambda a: a.head_dim is not None or a.hidden_size % a.attention_heads == 0,
    ),
    Rule(
        "self.expertsPerToken <= self.experts",
        "expertsPerToken cannot exceed experts",
        lambda a: a.experts_per_token <= a.experts,
    ),
    Rule(
        "self.slidingWindowLayers <= self.layers",
        "slidingWindowLayers cannot exceed layers",
        lambda a: a.sliding_window_layers <= a.layers,
    ),
    Rule(
        "self.denseLayers <= self.layers",
        "denseLayers cannot exceed layers",
        lambda a: a.dense_layers <= a.layers,
    ),
    Rule(
        "self.kvLoraRank == 0 || (self.qkRopeHeadDim > 0 && self.vHeadDim > 0)",
        "latent attention (kvLoraRank > 0) needs qkRopeHeadDim and vHeadDim",
        lambda a: a.kv_lora_rank == 0 or (a.qk_rope_head_dim > 0 and a.v_head_dim > 0),
    ),
)
_MODEL_RULES = (
    Rule(
        "has(self.name) != has(self.architecture)",
        "set exactly one of name (a catalog id) and architecture (an inline shape)",
        lambda m: (m.name is None) != (m.architecture is None),
    ),
    Rule(
        "!has(self.architecture) || has(self.source)",
        "source is required with architecture: it is what the server loads",
        lambda m: m.architecture is None or m.source is not None,
    ),
)


class InlineArchitecture(_Schema):
    """The memory-relevant shape of a model the catalog lacks, with config.json's numbers."""

    model_config = ConfigDict(json_schema_extra=_validations(*_ARCHITECTURE_RULES))

    layers: Integer = Field(
        ge=1, le=SHAPE_LIMITS["num_layers"], description="Transformer layers (num_hidden_layers)."
    )
    hidden_size: Integer = Field(
        ge=1, le=SHAPE_LIMITS["hidden_size"], description="Model width (hidden_size)."
    )
    attention_heads: Integer = Field(
        ge=1, le=SHAPE_LIMITS["num_attention_heads"], description="Query heads (num_attention_heads)."
    )
    kv_heads: Integer = Field(
        ge=1,
        le=SHAPE_LIMITS["num_kv_heads"],
        description="Key/value heads (num_key_value_heads): equal to attentionHeads for multi-head "
        "attention, fewer for grouped-query, 1 for multi-query attention.",
    )
    head_dim: Annotated[StrictInt, Field(ge=1, le=SHAPE_LIMITS["head_dim"]), INTEGRAL] | None = Field(
        default=None,
        description="Dimension of one head; default hiddenSize / attentionHeads.",
    )
    vocab_size: Integer = Field(
        ge=1, le=SHAPE_LIMITS["vocab_size"], description="Vocabulary size (vocab_size)."
    )
    intermediate_size: Integer = Field(
        ge=0,
        le=SHAPE_LIMITS["intermediate_size"],
        description="MLP inner width (intermediate_size); 0 for MoE-only MLPs.",
    )
    parameters: Annotated[StrictInt, Field(ge=1, le=SHAPE_LIMITS["parameters"]), INTEGRAL] | None = Field(
        default=None,
        description="Official total parameter count, when known; otherwise counted from the shape.",
    )
    gated_mlp: StrictBool = Field(
        default=True, description="Whether the MLP has a gate projection (llama-like) or not (gpt-neox-like)."
    )
    tie_word_embeddings: StrictBool = Field(
        default=False, description="Whether the output head shares the input embedding matrix."
    )
    experts: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["num_experts"],
        description="Routed experts per MoE layer; 0 for dense.",
    )
    experts_per_token: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["num_experts_per_token"],
        description="Experts each token is routed to.",
    )
    moe_intermediate_size: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["moe_intermediate_size"],
        description="Inner width of one expert's MLP.",
    )
    shared_expert_intermediate_size: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["shared_expert_intermediate_size"],
        description="Inner width of the always-active shared experts together (n_shared_experts x "
        "moe_intermediate_size, or shared_expert_intermediate_size).",
    )
    dense_layers: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["num_layers"],
        description="Leading layers of an MoE model whose MLP is dense (first_k_dense_replace).",
    )
    kv_lora_rank: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["kv_lora_rank"],
        description="Latent width of multi-head latent attention (kv_lora_rank, DeepSeek); 0 for K/V heads. "
        "The cache then holds kvLoraRank + qkRopeHeadDim values per token and layer, on every GPU.",
    )
    q_lora_rank: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["q_lora_rank"],
        description="Query compression width (q_lora_rank); 0 for none.",
    )
    qk_rope_head_dim: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["qk_rope_head_dim"],
        description="Rotary part of a latent-attention key (qk_rope_head_dim).",
    )
    qk_nope_head_dim: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["qk_nope_head_dim"],
        description="Non-rotary part of a latent-attention head (qk_nope_head_dim).",
    )
    v_head_dim: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["v_head_dim"],
        description="Value head width under latent attention (v_head_dim).",
    )
    sliding_window: Annotated[StrictInt, Field(ge=1, le=SHAPE_LIMITS["sliding_window"]), INTEGRAL] | None = (
        Field(
            default=None,
            description="Tokens a sliding-window layer attends to, if any layer has one.",
        )
    )
    sliding_window_layers: Integer = Field(
        default=0,
        ge=0,
        le=SHAPE_LIMITS["num_sliding_window_layers"],
        description="Layers that use the sliding window (their KV cache is bounded).",
    )
    dtype: WeightDtype = Field(default=WeightDtype.BF16, description="The checkpoint's dtype (torch_dtype).")
    max_position_embeddings: (
        Annotated[StrictInt, Field(ge=1, le=SHAPE_LIMITS["max_position_embeddings"]), INTEGRAL] | None
    ) = Field(
        default=None,
        description="The context window (max_position_embeddings), if limited.",
    )

    @model_validator(mode="after")
    def _invariants(self) -> InlineArchitecture:
        _check(self, _ARCHITECTURE_RULES)
        return self

    def to_architecture(self, name: str) -> ModelArchitecture:
        """The sizing core's architecture; an MoE model's dense layers come first, as in DeepSeek's."""
        return ModelArchitecture(
            name=name,
            parameters=self.parameters,
            num_layers=self.layers,
            hidden_size=self.hidden_size,
            num_attention_heads=self.attention_heads,
            num_kv_heads=self.kv_heads,
            head_dim=self.head_dim or self.hidden_size // self.attention_heads,
            vocab_size=self.vocab_size,
            intermediate_size=self.intermediate_size,
            gated_mlp=self.gated_mlp,
            tie_word_embeddings=self.tie_word_embeddings,
            num_experts=self.experts,
            num_experts_per_token=self.experts_per_token,
            moe_intermediate_size=self.moe_intermediate_size,
            shared_expert_intermediate_size=self.shared_expert_intermediate_size,
            num_moe_layers=self.layers - self.dense_layers if self.experts else 0,
            kv_lora_rank=self.kv_lora_rank,
            q_lora_rank=self.q_lora_rank,
            qk_rope_head_dim=self.qk_rope_head_dim,
            qk_nope_head_dim=self.qk_nope_head_dim,
            v_head_dim=self.v_head_dim,
            sliding_window=self.sliding_window,
            num_sliding_window_layers=self.sliding_window_layers,
            native_dtype=self.dtype.value,
            max_position_embeddings=self.max_position_embeddings,
        )


class ModelSpec(_Schema):
    """Which model to serve and in which numeric formats."""

    model_config = ConfigDict(json_schema_extra=_validations(*_MODEL_RULES))

    name: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Catalog id of the model, e.g. tiiuae/falcon-7b (`vramgate models` lists them). "
        "Exactly one of name and architecture.",
    )
    architecture: InlineArchitecture | None = Field(
        default=None, description="Inline shape of a model the catalog lacks; requires source."
    )
    source: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="What the server loads: a Hugging Face id, an s3:// URI or a /models/... path. "
        "Defaults to name.",
    )
    precision: Precision = Field(
        default=Precision.AUTO,
        description="Weight precision; auto keeps the checkpoint's own (bf16/fp16, or its quantization).",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default=KvCacheDtype.AUTO,
        description="KV-cache element type; auto follows the compute dtype, fp8 halves the cache.",
    )

    @model_validator(mode="after")
    def _invariants(self) -> ModelSpec:
        _check(self, _MODEL_RULES)
        return self


class WorkloadSpec(_Schema):
    """The traffic one replica must hold at once: the sizing target."""

    max_sequence_length: Integer = Field(
        ge=1,
        le=MAX_SEQUENCE_TOKENS,
        description="Prompt plus generated tokens of one request; the server's max model length.",
    )
    concurrency: Integer = Field(
        ge=1,
        le=MAX_CONCURRENCY,
        description="Requests in flight per replica, each up to maxSequenceLength tokens, that must fit "
        "in the KV cache at the same time.",
    )


MAX_PREFERENCES = 8
_GPU_RULES = (
    Rule(
        "!has(self.type) || !has(self.preferences)",
        "set type or preferences, not both: type is a single preference",
        lambda g: g.type is None or g.preferences is None,
    ),
)
_GPU_TYPE_DESCRIPTION = (
    "GPU type: a catalog name or node-label product ("
    + ", ".join(gpu.name for gpu in gpu_catalog().values())
    + "), a product the cluster's nodes carry (nvidia-smi's name works too), or a MIG profile of one "
    "(A100-40GB-MIG-1g.5gb)."
)


class GpuPreference(_Schema):
    """One acceptable GPU choice; the first in the list that fits and can be placed wins."""

    type: StrictStr = Field(min_length=1, max_length=63, description=_GPU_TYPE_DESCRIPTION)
    count: Annotated[StrictInt, Field(ge=1, le=MAX_GPUS_PER_REPLICA), INTEGRAL] | None = Field(
        default=None, description="GPUs per replica; default gpu.count."
    )
    max_memory_fraction: StrictFloat | None = Field(
        default=None,
        allow_inf_nan=False,
        gt=0,
        le=1,
        description="Memory cap for this entry; default gpu.maxMemoryFraction.",
    )


class GpuSpec(_Schema):
    """Constraints on the GPUs; anything omitted is chosen: the cheapest type and count that fit."""

    model_config = ConfigDict(json_schema_extra=_validations(*_GPU_RULES))

    type: StrictStr | None = Field(
        default=None, min_length=1, max_length=63, description=_GPU_TYPE_DESCRIPTION
    )
    count: Annotated[StrictInt, Field(ge=1, le=MAX_GPUS_PER_REPLICA), INTEGRAL] | None = Field(
        default=None,
        description="GPUs per replica (the tensor-parallel size); must split the attention heads evenly.",
    )
    max_memory_fraction: StrictFloat | None = Field(
        default=None,
        allow_inf_nan=False,
        gt=0,
        le=1,
        description="Upper bound on the share of each GPU's memory the engine may claim (default 0.95).",
    )
    preferences: list[GpuPreference] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PREFERENCES,
        description="Ordered GPU choices, e.g. H100-80GB, then 2 x L4, then L4: the first that fits and "
        "that the cluster can place wins; status.placement records why earlier ones were passed over. "
        "Not with type.",
    )

    @model_validator(mode="after")
    def _invariants(self) -> GpuSpec:
        _check(self, _GPU_RULES)
        return self


class KeySelector(_Schema):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: StrictStr = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret or ConfigMap."
    )
    key: StrictStr = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key to read."
    )
    optional: StrictBool | None = Field(default=None, description="Whether the key may be missing.")


class FieldSelector(_Schema):
    """A field of the pod, as the downward API exposes it."""

    field_path: StrictStr = Field(
        max_length=320,
        pattern=POD_FIELD_PATH,
        description="metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], "
        "metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.hostIP(s) or "
        "status.podIP(s).",
    )
    api_version: Literal["v1"] | None = Field(default=None, description="v1, the only version.")


class ResourceFieldSelector(_Schema):
    """A request or limit of the server container, as the downward API exposes it."""

    model_config = ConfigDict(json_schema_extra=_validations(*_DIVISOR_RULES))

    resource: ContainerResourceField = Field(description="limits.cpu, requests.memory, ...")
    divisor: Divisor | None = Field(
        default=None, description="Unit of the value: 1m or 1 for CPU, 1 to 1Ei for memory and storage."
    )

    @model_validator(mode="after")
    def _invariants(self) -> ResourceFieldSelector:
        _check(self, _DIVISOR_RULES)
        return self


class EnvVarSource(_Schema):
    """Where a variable's value comes from: exactly one source."""

    model_config = ConfigDict(json_schema_extra=_validations(*_ENV_SOURCE_RULES))

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A request or limit of the server container."
    )

    @model_validator(mode="after")
    def _invariants(self) -> EnvVarSource:
        _check(self, _ENV_SOURCE_RULES)
        return self


class EnvVar(_Schema):
    """A container environment variable, as in a Pod (core/v1 EnvVar)."""

    model_config = ConfigDict(json_schema_extra=_validations(*_ENV_RULES))

    name: StrictStr = Field(
        min_length=1,
        max_length=256,
        pattern=C_IDENTIFIER,
        description="Variable name: letters, digits and underscores, not starting with a digit.",
    )
    value: StrictStr | None = Field(
        default=None, max_length=MAX_ENV_VALUE_LENGTH, description="Literal value."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="A Secret or ConfigMap key, a pod field or a container resource."
    )

    @model_validator(mode="after")
    def _invariants(self) -> EnvVar:
        _check(self, _ENV_RULES)
        return self


class ResourceRequirements(_Schema):
    """Requests and limits of the server container, in Kubernetes quantities (500m, 16Gi, 2)."""

    model_config = ConfigDict(json_schema_extra=_validations(*_RESOURCE_RULES))

    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=len(CONTAINER_RESOURCES),
        description="Minimum cpu, memory and ephemeral-storage the scheduler reserves.",
    )
    limits: dict[str, Quantity] | None = Field(
        default=None,
        max_length=len(CONTAINER_RESOURCES),
        description="Maximum cpu, memory and ephemeral-storage; each at least its request.",
    )

    @model_validator(mode="after")
    def _invariants(self) -> ResourceRequirements:
        _check(self, _RESOURCE_RULES)
        return self

    def as_manifest(self) -> dict[str, dict[str, int | str]]:
        """Only what was set, as the Pod's container wants it."""
        return {
            key: dict(value) for key, value in (("requests", self.requests), ("limits", self.limits)) if value
        }


def _engine_names() -> str:
    """`vllm, tgi or sglang`: the registry's engines, in its order."""
    *others, last = (engine.value for engine in Engine)
    return f"{', '.join(others)} or {last}"


def _engine_ports() -> str:
    """`vLLM 8000, TGI 80, SGLang 30000`: each engine's default port from its module."""
    return ", ".join(f"{definition(e).display_name} {definition(e).runtime.port}" for e in Engine)


class RuntimeSpec(_Schema):
    """How the inference server runs: engine, image and container settings."""

    engine: Engine = Field(default=Engine.VLLM, description=f"Inference server: {_engine_names()}.")
    image: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMAGE_LENGTH,
        pattern=IMAGE_REFERENCE,
        description="Container image, a reference such as vllm/vllm-openai:v0.11.0 (repository, optional "
        "tag, optional @sha256 digest); defaults per engine, and must match the operator's image policy. "
        "Its tag is taken as the engine version, which selects the memory profile (vLLM's differs by "
        "release).",
    )
    engine_version: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
        description="Engine release, for images whose tag does not say it (a digest, latest).",
    )
    extra_args: list[Annotated[StrictStr, Field(max_length=MAX_ARG_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Arguments appended to the planned ones; flags the plan sets (memory fraction, "
        "batch, parallelism, max length, dtype, quantization, port) are refused here: change the spec "
        "instead.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=MAX_LIST_ITEMS,
        description="Environment variables of the server, as in a Pod (name, then value or valueFrom).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements,
        description="CPU, memory and ephemeral-storage requests and limits of the server container; its "
        "GPUs (nvidia.com/gpu) come from the plan.",
    )
    port: Annotated[StrictInt, Field(ge=1, le=65535), INTEGRAL] | None = Field(
        default=None,
        description=f"HTTP port of the server; defaults per engine ({_engine_ports()}).",
    )
    service_account_name: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="ServiceAccount the server runs as; its token is mounted only when one is named.",
    )
    run_as_non_root: StrictBool = Field(
        default=False,
        description="Set when the image runs as a non-root user: the pod then refuses to start as root.",
    )

    @model_validator(mode="after")
    def _unique_env(self) -> RuntimeSpec:
        names = [variable.name for variable in self.env]
        if len(names) != len(set(names)):
            raise ValueError("env names must be unique")
        return self

    def image_or_default(self) -> str:
        """The image that runs: the spec's, else the engine's default (whose tag names its release)."""
        return self.image or definition(self.engine).runtime.image

    def engine_version_or_tag(self) -> str | None:
        """The explicit engine version, else the image tag; None when neither says it: the plan then
        reports the release it assumed."""
        return self.engine_version or self.image_tag()

    def image_tag(self) -> str | None:
        """The image's tag (digests and registry ports are no tags)."""
        reference = self.image_or_default().split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        return tag if repository and "/" not in tag else None


class LLMDeploymentSpec(_Schema):
    """A model served for a workload, sized to its GPUs before anything starts."""

    model: ModelSpec = Field(description="The model and its numeric formats.")
    workload: WorkloadSpec = Field(description="Sequence length and concurrency per replica.")
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPU type, count and memory cap, all optional.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec, description="Engine, image and container.")
    replicas: Integer = Field(default=1, ge=0, le=1000, description="Identical server replicas.")

    @property
    def model_source(self) -> str:
        """What the server loads: the source, else the catalog id."""
        source = self.model.source or self.model.name
        assert source is not None, "the schema requires name or source"
        return source


class Phase(StrEnum):
    """Where an LLMDeployment stands, as the operator last saw it."""

    PLANNED = "Planned"
    DEPLOYED = "Deployed"
    REJECTED = "Rejected"
    FAILED = "Failed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Schema):
    """A standard Kubernetes condition."""

    type: str = Field(
        description="Planned (the spec fits its GPUs), Ready (the server is available), Schedulable (the "
        "cluster still holds its placement) or MemoryCheckSkipped (admitted by annotation without fitting)."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="What a person should know, in numbers where possible.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="The generation this was computed for.")


class PlanSummary(_Schema):
    """The sizing plan in force: what the Deployment was generated from. Bytes are per GPU."""

    model: str = Field(description="The model's name.")
    engine: Engine = Field(description="The inference server.")
    engine_release: str = Field(
        default="", description="The engine release whose memory rules sized it (from the image tag)."
    )
    assumptions: list[str] = Field(
        default_factory=list,
        description="What the plan assumed where the spec did not say (an unstated engine release).",
    )
    gpu_type: str = Field(description="GPU type chosen or pinned.")
    gpu_product: str = Field(description="Its nvidia.com/gpu.product node label.")
    gpu_count: int = Field(description="GPUs per replica (tensor parallel).")
    memory_fraction: float = Field(description="Share of each GPU's memory the engine claims.")
    max_batch: int = Field(description="Concurrent max-length sequences the KV cache holds.")
    max_model_len: int = Field(description="Longest request in tokens.")
    weights_bytes_per_gpu: int = Field(description="Model weights on one GPU.")
    kv_cache_bytes_per_gpu: int = Field(description="KV cache for the target concurrency on one GPU.")
    overhead_bytes_per_gpu: int = Field(description="Runtime overhead inside the fraction on one GPU.")
    required_bytes_per_gpu: int = Field(description="Weights + KV cache + overhead on one GPU.")
    gpu_memory_bytes: int = Field(description="Memory of one GPU as the CUDA runtime reports it.")
    kv_capacity_tokens: int = Field(description="Tokens the whole KV cache holds at the fraction.")


class SkippedPreference(_Schema):
    """A preference passed over, and why, in numbers."""

    index: int = Field(description="Position in spec.gpu.preferences.")
    type: str = Field(description="Its GPU type.")
    reason: str = Field(description="Why it was passed over.")


class PlacementStatus(_Schema):
    """Where the plan was placed and what the operator saw when it chose."""

    mode: str = Field(description="cluster (only types present) or catalog (any type: nodes on demand).")
    inventory: str = Field(default="", description="The cluster's GPU nodes as seen when planning.")
    gpu_type: str | None = Field(default=None, description="The GPU type (or MIG profile) chosen.")
    resource: str = Field(description="The extended resource each pod requests (nvidia.com/gpu, mig-...).")
    nodes: int = Field(description="Pods per replica: pipeline stages, one node each.")
    hami_memory_mi_b: int | None = Field(
        default=None, alias="hamiMemoryMiB", description="HAMi GPU memory share per pod, when shared."
    )
    chosen_preference: int | None = Field(default=None, description="Index of the preference that won.")
    skipped: list[SkippedPreference] = Field(
        default_factory=list, description="Preferences passed over before the chosen one."
    )


class ObservedCapacity(_Schema):
    """The KV-cache capacity the running engine reported once its server was Ready, beside the plan's."""

    planned_tokens: int = Field(
        description="Tokens the plan's KV cache holds (status.plan.kvCapacityTokens)."
    )
    observed_tokens: int = Field(description="Tokens the engine reports its KV cache holds.")
    relative_error: float = Field(description="(observed - planned) / planned.")
    source: str = Field(description="Where the engine states it (metric or field).")
    pod: str = Field(description="The server pod that was read.")
    observed_generation: int | None = Field(default=None, description="The spec generation it was read for.")
    observed_at: str = Field(description="When it was read (RFC 3339).")


class LLMDeploymentStatus(_Schema):
    """What the operator decided and did, for the generation it last observed."""

    phase: Phase | None = Field(default=None, description="Planned, Deployed, Rejected or Failed.")
    message: str | None = Field(default=None, description="The last decision, in a sentence with numbers.")
    observed_generation: int | None = Field(default=None, description="The spec generation acted on.")
    plan: PlanSummary | None = Field(default=None, description="The plan in force.")
    deployment: str | None = Field(default=None, description="Name of the generated Deployment and Service.")
    placement: PlacementStatus | None = Field(default=None, description="How the GPUs were chosen.")
    capacity: ObservedCapacity | None = Field(
        default=None, description="KV-cache capacity planned against what the running engine reports."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Planned, Ready, Schedulable and MemoryCheckSkipped conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class LLMDeployment(_Schema):
    """An LLM inference server sized to its GPUs: vramgate refuses a spec that cannot fit, and otherwise
    runs it as a Deployment with the GPU type, count, memory fraction and max batch it computed."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_validations(NAME_RULE))

    api_version: str = Field(default=API_VERSION, description=f"{API_VERSION}.")
    kind: str = Field(default=KIND, description=f"{KIND}.")
    spec: LLMDeploymentSpec = Field(description="What to serve, for which workload, on which GPUs.")
    status: LLMDeploymentStatus | None = Field(
        default=None, description="Set by the operator: phase, plan, conditions."
    )


class SpecError(ValueError):
    """A spec that cannot be sized; `field` is the path in the resource (`spec.gpu.count`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# The sizing core names fields like CLI flags; the resource names them by path.
_SIZING_FIELD_PATHS = {
    "gpu": "spec.gpu.type",
    "gpu-count": "spec.gpu.count",
    "max-seq-len": "spec.workload.maxSequenceLength",
    "precision": "spec.model.precision",
}
MAX_QUOTED_INPUT = 80  # an error quotes this much of a bad value: a 64 KiB string is no message
_PATTERN_WORDING = {
    DNS_SUBDOMAIN: "a DNS subdomain (lowercase letters, digits, '-' and '.')",
    C_IDENTIFIER: "letters, digits and '_', not starting with a digit",
    POD_FIELD_PATH: "a pod field the downward API exposes",
    IMAGE_REFERENCE: "an image reference such as vllm/vllm-openai:v0.11.0 "
    "or registry:5000/team/vllm@sha256:<64 hex>",
    r"^[-._a-zA-Z0-9]+$": "letters, digits, '-', '_' and '.'",
    r"^[A-Za-z0-9][A-Za-z0-9._+-]*$": "a version such as 0.11.0",
}


def parse_spec(raw: object) -> LLMDeploymentSpec:
    """Validate a resource's `spec`; the first error raises SpecError, all errors are in its message."""
    if not isinstance(raw, Mapping):
        raise SpecError("spec", "required: an object with model and workload")
    try:
        return LLMDeploymentSpec.model_validate(without_nulls(raw))
    except ValidationError as error:
        problems = [(_path(problem["loc"]), _wording(problem)) for problem in error.errors()]
        field = problems[0][0]
        raise SpecError(
            field, "; ".join(f"{path}: {text}" for path, text in problems)[len(field) + 2 :]
        ) from None


def without_nulls(value: Any) -> Any:
    """The value with every null field of an object left out, as the API server prunes them from a
    custom resource before admission (no field of the schema is nullable): `gpu: null` in a file means
    what it means to kubectl, the field unset. Null items of a list stay, and are refused."""
    if isinstance(value, Mapping):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _path(location: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _wording(problem: Mapping[str, Any]) -> str:
    """Pydantic's message, with the offending value where it helps (not for missing fields)."""
    kind = problem["type"]
    if kind in ("missing", "extra_forbidden"):
        return "required" if kind == "missing" else "unknown field"
    if kind == "value_error":  # one of the Rules: its message is the whole story
        return str(problem["ctx"]["error"])
    got = repr(problem["input"])
    got = got if len(got) <= MAX_QUOTED_INPUT else f"{got[:MAX_QUOTED_INPUT]}... ({len(got):,} characters)"
    if kind == "string_pattern_mismatch":
        return f"must be {_PATTERN_WORDING[problem['ctx']['pattern']]} (got {got})"
    return f"{problem['msg']} (got {got})"


def to_plan_request(spec: LLMDeploymentSpec) -> PlanRequest:
    """The sizing core's request for this spec, without its GPU type (placement resolves types against the
    cluster), with the planner's flags from extraArgs; an unknown model, and extraArgs or env that would
    contradict the plan, raise SpecError with their path."""
    check_environment(spec)
    check_process_strings(spec)
    _check_port(spec)
    _check_engine_version(spec)
    planner_inputs: Mapping[str, Any] = extra_arguments(spec).planner_inputs  # PlanRequest fields
    try:
        architecture = (
            spec.model.architecture.to_architecture(spec.model_source)
            if spec.model.architecture is not None
            # The catalog only: a name must never make the operator read a file of its own.
            else find_model(spec.model_source if spec.model.name is None else spec.model.name).architecture()
        )
        return PlanRequest(
            model=architecture,
            model_source=spec.model_source,
            precision=spec.model.precision,
            kv_cache_dtype=spec.model.kv_cache_dtype,
            max_seq_len=spec.workload.max_sequence_length,
            concurrency=spec.workload.concurrency,
            engine=spec.runtime.engine,
            engine_version=spec.runtime.engine_version_or_tag(),
            engine_image=spec.runtime.image_or_default(),
            gpu_count=spec.gpu.count,
            max_memory_fraction=(
                DEFAULT_MAX_MEMORY_FRACTION
                if spec.gpu.max_memory_fraction is None
                else spec.gpu.max_memory_fraction
            ),
            **planner_inputs,
        )
    except OutOfBoundsError as error:  # an inline architecture the schema allowed but the core refuses
        raise SpecError("spec.model.architecture", f"{error.message} ({error.field})") from None
    except SizingError as error:
        raise sizing_error_to_spec_error(error) from None


def sizing_error_to_spec_error(error: SizingError) -> SpecError:
    """The same error, with the resource's field path instead of the sizing core's flag name, and the
    resource's remedy for an unknown model."""
    if error.field == "model":
        return SpecError(
            "spec.model.name", f"{error.message} (set spec.model.architecture for a model it lacks)"
        )
    return SpecError(_SIZING_FIELD_PATHS.get(error.field, "spec"), error.message)


@dataclass(frozen=True)
class ExtraArguments:
    """extraArgs split into what the planner reads (PlanRequest fields) and what passes through to the
    engine as written; the plan writes the planner's flags itself, so they cannot contradict it."""

    planner_inputs: Mapping[str, int]
    passthrough: tuple[str, ...]


def extra_arguments(spec: LLMDeploymentSpec) -> ExtraArguments:
    """Read extraArgs as the engine's parser would; a flag the plan owns raises SpecError naming the
    entry, the spelling it was taken for and the spec field to set instead."""
    command_line = definition(spec.runtime.engine).command_line
    inputs: dict[str, int] = {}
    consumed: set[int] = set()
    if (repeat := command_line.repeated(spec.runtime.extra_args)) is not None:
        raise SpecError(
            f"spec.runtime.extraArgs[{repeat[0]}]",
            f"{repeat[1]} is given a second time, which {_engine_name(spec)}'s parser refuses at start; "
            "give it once",
        )
    recognised = command_line.recognise(spec.runtime.extra_args)
    for argument in recognised:
        path = f"spec.runtime.extraArgs[{argument.indices[0]}]"
        written = spec.runtime.extra_args[argument.indices[0]][:MAX_QUOTED_INPUT]
        if isinstance(argument.flag, GovernedFlag):
            if argument.flag.bare_passes:
                if argument.value is None:
                    if argument.flag.sets is not None:  # planned: the plan writes the switch itself
                        inputs[argument.flag.sets] = True
                        consumed.update(argument.indices)
                    continue
                raise SpecError(
                    path,
                    f"{written!r} gives {_engine_name(spec)}'s switch {argument.spelling} the value "
                    f"{argument.value[:MAX_QUOTED_INPUT]!r}: {argument.flag.instead}",
                )
            raise SpecError(
                path,
                f"{written!r} is {argument.spelling} to {_engine_name(spec)}, which the plan owns: "
                f"{argument.flag.instead}",
            )
        if re.search(r"[.+]", written.partition("=")[0]):  # vLLM would pass it a JSON object or list
            raise SpecError(
                path, f"{written!r}: write {argument.spelling}=N, a number, not a JSON field of it"
            )
        inputs[argument.flag.field] = _planner_value(
            spec, argument.flag, argument.spelling, argument.value, path
        )
        consumed.update(argument.indices)
    _check_no_positional(spec, {argument.indices[-1] for argument in recognised if len(argument.indices) > 1})
    limit = inputs.get("max_num_seqs")
    if limit is not None and limit < spec.workload.concurrency:
        raise SpecError(
            "spec.runtime.extraArgs",
            f"a batch limit of {limit} cannot hold spec.workload.concurrency {spec.workload.concurrency}; "
            "raise it or lower the concurrency",
        )
    passthrough = tuple(arg for index, arg in enumerate(spec.runtime.extra_args) if index not in consumed)
    return ExtraArguments(inputs, passthrough)


def _check_no_positional(spec: LLMDeploymentSpec, planned_values: set[int]) -> None:
    """Refuse an argument the engine can only read as a positional one: a word first in extraArgs, or
    after an option whose value is attached (`--seed=1 x`) or after a planned flag's value, and anything
    after `--`. The plan's own arguments all carry their values attached, so nothing before extraArgs
    takes one. vLLM's server reads one such word as a model name it ignores; SGLang and TGI stop.
    argparse takes `--option value` written as one entry (a space in the option's name) for a word too."""
    follows_complete_option = True
    for index, argument in enumerate(spec.runtime.extra_args):
        spaced = any(character.isspace() for character in argument.partition("=")[0])
        bare = not argument.startswith("-") or argument == "-" or spaced
        if argument == "--" or (bare and follows_complete_option):
            raise SpecError(
                f"spec.runtime.extraArgs[{index}]",
                f"{argument[:MAX_QUOTED_INPUT]!r} is neither an option nor the value of the option before "
                f"it, so {_engine_name(spec)} would read it as a positional argument; write options as "
                "--option=value (the model is spec.model's)",
            )
        follows_complete_option = index in planned_values or (not bare and "=" in argument)


def _engine_name(spec: LLMDeploymentSpec) -> str:
    return definition(spec.runtime.engine).display_name


def _planner_value(
    spec: LLMDeploymentSpec, flag: PlannedFlag, spelling: str, value: str | None, path: str
) -> int:
    highest = MAX_CONCURRENCY if flag.field == "max_num_seqs" else MAX_SEQUENCE_TOKENS
    allowed = (
        f"one of {', '.join(map(str, flag.choices))}"
        if flag.choices
        else f"a whole number from 1 to {highest:,}"
    )
    number = int(value) if value is not None and value.isascii() and value.isdigit() else 0
    if not 1 <= number <= highest or (flag.choices and number not in flag.choices):
        shown = "nothing" if value is None else repr(value[:MAX_QUOTED_INPUT])
        raise SpecError(path, f"{spelling} of {_engine_name(spec)} takes {allowed}, not {shown}")
    return number


def check_process_strings(spec: LLMDeploymentSpec) -> None:
    """Refuse what would reach the server's process in a form it cannot take or that evades the flag
    checks: a NUL (no argument or variable can hold one, so the container never starts), and a variable
    reference the kubelet expands where it would write an option (`$(FLAG)`, `--gpu-$(REST)`)."""
    strings = [(f"spec.runtime.extraArgs[{i}]", arg) for i, arg in enumerate(spec.runtime.extra_args)]
    strings += [(f"spec.runtime.env[{i}].value", env.value or "") for i, env in enumerate(spec.runtime.env)]
    strings.append(("spec.model.source", spec.model_source))
    for path, text in strings:
        if "\x00" in text:
            raise SpecError(path, "contains a NUL character, which no process argument or variable can hold")
    for index, argument in enumerate(spec.runtime.extra_args):
        if (reference := _option_forming_reference(argument)) is not None:
            raise SpecError(
                f"spec.runtime.extraArgs[{index}]",
                f"{argument[:MAX_QUOTED_INPUT]!r}: the kubelet replaces {reference} with a variable's value "
                "where it would be part of an option's name, which no check here can see; write the option "
                "itself (a reference may stand after '=', as a value), or $$( for a literal $(",
            )


def _check_engine_version(spec: LLMDeploymentSpec) -> None:
    """Refuse an engineVersion that contradicts a release the image tag names: the tag's release is the
    one that runs, so a plan for another would size memory by the wrong rules."""
    stated, tag = spec.runtime.engine_version, spec.runtime.image_tag()
    tagged, release = parse_version(tag), parse_version(stated)
    # A minor tag (text-generation-inference:2.0) runs one of that minor's patches.
    if tagged is not None and release is not None and LATEST_PATCH in (tagged[2], release[2]):
        tagged, release = tagged[:2], release[:2]
    if stated is not None and tagged is not None and release != tagged:
        raise SpecError(
            "spec.runtime.engineVersion",
            f"{stated!r} contradicts the image tag {tag!r}, the release that runs; leave engineVersion out, "
            "or set it only for an image whose tag names no release (a digest, latest)",
        )


def _check_port(spec: LLMDeploymentSpec) -> None:
    """Refuse an HTTP port the server also binds for something else, at its default or where extraArgs
    or env move it: the server would stop at start."""
    engine = definition(spec.runtime.engine)
    http_port = spec.runtime.port or engine.runtime.port
    for other in engine.runtime.other_ports:
        path, moved = _option_value(spec, other.option)
        port = int(moved) if moved is not None and moved.isascii() and moved.isdigit() else other.default
        if port == http_port:
            raise SpecError(
                path or "spec.runtime.port",
                f"{_engine_name(spec)} would listen on {port} for {other.purpose} ({other.option}) and for "
                "HTTP alike; choose another port for one of them",
            )


def _option_value(spec: LLMDeploymentSpec, option: str) -> tuple[str | None, str | None]:
    """Where extraArgs (`--option=N`, `--option N`) or, under clap, env set `option`, and its value."""
    arguments = spec.runtime.extra_args
    for index, argument in enumerate(arguments):
        if argument.startswith(f"{option}="):
            return f"spec.runtime.extraArgs[{index}]", argument.partition("=")[2]
        if argument == option and index + 1 < len(arguments):
            return f"spec.runtime.extraArgs[{index}]", arguments[index + 1]
    if definition(spec.runtime.engine).command_line.syntax is OptionSyntax.CLAP:
        variable = option[2:].upper().replace("-", "_")
        for index, env in enumerate(spec.runtime.env):
            if env.name == variable and env.value is not None:
                return f"spec.runtime.env[{index}].value", env.value
    return None, None


def _option_forming_reference(argument: str) -> str | None:
    """The first `$(NAME)` the kubelet would expand (its rules: `$$` is a literal `$`, an unclosed `$(`
    stays as written) that starts the argument or stands in an option's name before its first `=`."""
    index = 0
    while (index := argument.find("$", index)) != -1:
        if argument.startswith("$$", index):
            index += 2
            continue
        end = argument.find(")", index)
        if argument.startswith("$(", index) and end != -1:
            name_part = argument.startswith("-") and "=" not in argument[:index]
            if index == 0 or name_part:
                return argument[index : end + 1]
            return None  # every later reference is in the value too
        index += 1
    return None


def check_environment(spec: LLMDeploymentSpec) -> None:
    """Refuse env that would choose the GPUs or set a flag the plan owns behind its back."""
    command_line = definition(spec.runtime.engine).command_line
    governed_variables = command_line.environment_variables()
    memory_variables = dict((*MEMORY_VARIABLES, *command_line.governed_variables))
    for index, variable in enumerate(spec.runtime.env):
        path = f"spec.runtime.env[{index}].name"
        if variable.name in GPU_VISIBILITY_VARIABLES:
            raise SpecError(
                path, f"{variable.name} chooses the GPUs the server sees; set spec.gpu.count instead"
            )
        if (why := memory_variables.get(variable.name)) is not None:
            raise SpecError(path, f"{variable.name} {why}: leave it unset")
        if (flag := governed_variables.get(variable.name)) is not None:
            instead = flag.instead if isinstance(flag, GovernedFlag) else "set it in extraArgs instead"
            raise SpecError(
                path,
                f"{_engine_name(spec)} reads {variable.name} as {flag.spellings[0]}, which the plan owns: "
                f"{instead}",
            )
