"""What a model is made of, as far as GPU memory is concerned, and how to read it from config.json.

One `ModelArchitecture` describes dense, grouped-query, multi-query, MLA, MoE and sliding-window models
alike. `architecture_from_config` understands the key names of the common Hugging Face families
(llama, mistral, mixtral, qwen2/3, gemma2/3, phi3, falcon, gpt_neox, gpt_oss, deepseek_v2/v3); a family
it does not know still works when its config uses the standard keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from vramgate.sizing.errors import OutOfBoundsError, SizingError
from vramgate.sizing.precision import Quantization, normalize_torch_dtype
from vramgate.sizing.records import bounded, check

# Families whose MLP is up-projection + activation + down-projection (two matrices, no gate).
_UNGATED_MLP_FAMILIES = frozenset(
    {"falcon", "gpt_neox", "gpt2", "gptj", "gpt_bigcode", "bloom", "opt", "phi", "mpt", "starcoder2"}
)
# Families whose `sliding_window`, when set, applies to every layer.
_ALL_LAYERS_SLIDING_FAMILIES = frozenset({"mistral", "mixtral", "phi3", "starcoder2"})
# Families with q/k/v projection biases (params only; they are tiny but make counts exact).
_QKV_BIAS_FAMILIES = frozenset(
    {"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text", "qwen2_5_vl_text"}
)
# Defaults of the transformers config classes, for keys their config.json files leave out. Any family
# not listed inherits PretrainedConfig's tie_word_embeddings=True.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {"vocab_size": 262208, "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "gemma2": {"head_dim": 256, "tie_word_embeddings": True},
    "falcon": {"tie_word_embeddings": True, "max_position_embeddings": 2048},
    **{
        family: {"tie_word_embeddings": False}
        for family in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "phi3",
            "deepseek_v2",
            "deepseek_v3",
            "gpt_neox",
            "gpt_oss",
            "llama4_text",
        )
    },
}


# Sub-configs that hold attention and MLP shapes (DBRX's DbrxAttentionConfig and DbrxFFNConfig, MPT's
# attn_config); a top-level key of the same name wins.
_NESTED_SHAPE_CONFIGS = ("attn_config", "ffn_config")
# Families whose MoE layers add shared experts of an expert's size that the config does not count
# (Llama4TextMoe: one shared expert beside the routed ones, transformers' modeling_llama4.py)
_SHARED_EXPERTS = {"llama4_text": 1}
# Families whose layers keep a per-sequence recurrent state (state-space, linear or lightning attention,
# short convolutions) beside or instead of an attention KV cache: engines size that state per sequence, not
# per token, which the sizing does not model. Configs of other families are told apart by the keys below.
_RECURRENT_FAMILIES = frozenset(
    {
        "mamba",
        "mamba2",
        "falcon_mamba",
        "jamba",
        "zamba",
        "zamba2",
        "bamba",
        "falcon_h1",
        "nemotron_h",
        "granitemoehybrid",
        "qwen3_next",
        "plamo2",
        "lfm2",
        "lfm2_moe",
        "minimax",
        "minimax_text_01",
        "minimax_m1",
        "recurrent_gemma",
        "rwkv",
        "rwkv5",
        "rwkv6",
        "rwkv7",
        "xlstm",
        "kimi_linear",
    }
)
# Keys that only configs with such layers write: the layer pattern of a hybrid, or the state's shape
_RECURRENT_KEYS = (
    "hybrid_override_pattern",
    "full_attention_interval",
    "attn_layer_period",
    "layers_block_type",
    "block_types",
    "attn_type_list",
    "linear_attn_config",
    "linear_num_key_heads",
    "ssm_cfg",
    "ssm_state_size",
    "mamba_d_state",
    "mamba_n_heads",
    "conv_L_cache",
)
# The layer types of `layer_types` whose cache is attention's
_ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})


# The largest shape the sizing core accepts, per field: generous past any published model (Llama-3.1-405B:
# 126 layers, 16384 wide, MLP 53248; DeepSeek-V3: 256 experts; vocabularies of ~260K), and small enough
# that no term overflows or keeps the planner looping. A config.json, the resource's inline architecture
# and the CLI's overrides all answer to these bounds.
SHAPE_LIMITS: Mapping[str, int] = {
    "parameters": 10**14,
    "num_layers": 1024,
    "hidden_size": 1_000_000,
    "num_attention_heads": 4096,
    "num_kv_heads": 4096,
    "head_dim": 65536,
    "vocab_size": 10_000_000,
    "intermediate_size": 10_000_000,
    "num_experts": 4096,
    "num_experts_per_token": 4096,
    "moe_intermediate_size": 10_000_000,
    "shared_expert_intermediate_size": 10_000_000,
    "num_moe_layers": 1024,
    "kv_lora_rank": 65536,
    "q_lora_rank": 65536,
    "qk_rope_head_dim": 4096,
    "qk_nope_head_dim": 4096,
    "v_head_dim": 4096,
    "sliding_window": 1 << 30,
    "num_sliding_window_layers": 1024,
    "max_position_embeddings": 1 << 30,
    "vision_parameters": 10**12,
    "image_size": 65536,
}


# Embeddings one image hands the language model where the config leaves it out (transformers' config class
# default: Gemma3Config.mm_tokens_per_image).
_IMAGE_TOKENS_DEFAULTS = {"gemma3": 256}


@dataclass(frozen=True, kw_only=True)
class VisionEncoder:
    """A ViT encoder as an engine profiles it: each image is `image_size` pixels square in `channels`, cut
    into patches the encoder layers see as tokens (hidden wide, an MLP intermediate wide), and the projector
    hands the language model `image_tokens` embeddings per image."""

    hidden_size: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["hidden_size"]))
    intermediate_size: int = field(metadata=bounded(ge=0, le=SHAPE_LIMITS["intermediate_size"]))
    image_size: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["image_size"]))
    patch_size: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["image_size"]))
    channels: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["head_dim"]))
    image_tokens: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["max_position_embeddings"]))
    gated_mlp: bool = False  # gate and up projections, then their product: three intermediate-wide tensors
    # Qwen-VL: the image size is the processor's setting, taken at the official checkpoints'
    dynamic_resolution: bool = False

    def __post_init__(self) -> None:
        check(self)

    @property
    def patches_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True, kw_only=True)
class ModelArchitecture:
    """The memory-relevant shape of a transformer.

    Attention kinds follow from the head counts: `num_kv_heads == num_attention_heads` is multi-head,
    `1` is multi-query, anything between is grouped-query; `kv_lora_rank > 0` is multi-head latent
    attention (DeepSeek), whose cache holds one compressed latent per token and layer.
    """

    name: str
    family: str = "custom"
    # The official total parameter count, when known.
    parameters: int | None = field(default=None, metadata=bounded(le=SHAPE_LIMITS["parameters"]))
    num_layers: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["num_layers"]))
    hidden_size: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["hidden_size"]))
    num_attention_heads: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["num_attention_heads"]))
    num_kv_heads: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["num_kv_heads"]))
    head_dim: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["head_dim"]))
    vocab_size: int = field(metadata=bounded(gt=0, le=SHAPE_LIMITS["vocab_size"]))
    intermediate_size: int = field(metadata=bounded(ge=0, le=SHAPE_LIMITS["intermediate_size"]))
    gated_mlp: bool = True
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    num_experts: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["num_experts"]))
    num_experts_per_token: int = field(
        default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["num_experts_per_token"])
    )
    moe_intermediate_size: int = field(
        default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["moe_intermediate_size"])
    )
    shared_expert_intermediate_size: int = field(  # all shared experts together
        default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["shared_expert_intermediate_size"])
    )
    num_moe_layers: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["num_moe_layers"]))
    kv_lora_rank: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["kv_lora_rank"]))
    q_lora_rank: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["q_lora_rank"]))
    qk_rope_head_dim: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["qk_rope_head_dim"]))
    qk_nope_head_dim: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["qk_nope_head_dim"]))
    v_head_dim: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["v_head_dim"]))
    # DeepSeek's sparse attention (V3.2): the key width its lightning indexer caches per token (0: none)
    index_head_dim: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["head_dim"]))
    sliding_window: int | None = field(
        default=None, metadata=bounded(gt=0, le=SHAPE_LIMITS["sliding_window"])
    )
    num_sliding_window_layers: int = field(
        default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["num_sliding_window_layers"])
    )
    native_dtype: str = "bf16"
    quantization: Quantization | None = None
    max_position_embeddings: int | None = field(
        default=None, metadata=bounded(gt=0, le=SHAPE_LIMITS["max_position_embeddings"])
    )
    # A multimodal checkpoint's vision encoder and projector: the engine loads them beside the language
    # model, in the compute dtype, on the first pipeline stage.
    vision_parameters: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["vision_parameters"]))
    # Its shape, where the config fixes what one image costs the engine's profile (None: not modelled).
    vision_encoder: VisionEncoder | None = None
    # Rotary position tables an engine may precompute: the positions of each distinct table (one per
    # distinct rope configuration) and the rotary width of a row (cos and sin: half of it each).
    rotary_table_positions: tuple[int, ...] = ()
    rotary_dim: int = field(default=0, metadata=bounded(ge=0, le=SHAPE_LIMITS["head_dim"]))

    def __post_init__(self) -> None:
        check(self)
        if self.num_attention_heads % self.num_kv_heads:  # no attention kernel takes a partial group
            raise OutOfBoundsError(
                "num_kv_heads",
                f"{self.num_kv_heads} KV heads do not divide {self.num_attention_heads} attention heads "
                "(each KV head serves a whole group of query heads)",
            )

    def __hash__(self) -> int:
        return self._fields_hash

    @cached_property
    def _fields_hash(self) -> int:
        """The fields' hash, computed once: the planner's caches are keyed on the architecture, up to a
        hundred lookups a plan, and hashing its thirty-odd fields each time cost more than the lookups."""
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    def __getstate__(self) -> dict[str, Any]:
        """The fields alone: a string's hash differs between processes, so the cached one is not pickled."""
        return {name: value for name, value in vars(self).items() if name != "_fields_hash"}

    @property
    def is_multimodal(self) -> bool:
        """The checkpoint carries a vision encoder the engine loads (and may cache images for)."""
        return self.vision_parameters > 0

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention: the cache stores a latent, not per-head K and V."""
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        """Mixture of experts: all experts' weights are resident though few are active per token."""
        return self.num_experts > 0 and self.num_moe_layers > 0

    @property
    def attention_kind(self) -> str:
        """MHA, GQA, MQA or MLA, the way model cards name it."""
        if self.is_mla:
            return "MLA"
        if self.num_kv_heads == 1 and self.num_attention_heads > 1:
            return "MQA"
        if self.num_kv_heads < self.num_attention_heads:
            return "GQA"
        return "MHA"

    @property
    def parameter_count(self) -> int:
        """The official count when known, else the count computed from the shape."""
        return self.parameters if self.parameters is not None else parameter_groups(self).total


@dataclass(frozen=True)
class ParameterGroups:
    """Parameters by the role that decides how they are stored and split over tensor-parallel GPUs.

    Quantizers keep embeddings, lm_head, norms and routers in 16 bits; tensor parallelism splits the
    vocabulary, heads and MLP columns, replicates norms and routers, and replicates K/V heads when there
    are fewer of them than GPUs.
    """

    embedding: int
    lm_head: int
    attention_split: int  # q/o projections and biases: split over TP ranks by head
    attention_kv: int  # k/v projections: one KV head group per rank at least
    attention_replicated: int  # MLA down-projections (q_a, kv_a): every rank holds them
    dense_mlp: int
    experts: int  # routed experts of all MoE layers
    shared_experts: int
    router: int
    norms: int
    vision: int = 0  # a multimodal model's vision encoder and projector

    @property
    def total(self) -> int:
        return (
            self.vision
            + self.embedding
            + self.lm_head
            + self.attention_split
            + self.attention_kv
            + self.attention_replicated
            + self.dense_mlp
            + self.experts
            + self.shared_experts
            + self.router
            + self.norms
        )


def parameter_groups(arch: ModelArchitecture) -> ParameterGroups:
    """Count parameters per group from the architecture alone."""
    hidden, layers = arch.hidden_size, arch.num_layers
    mlp_matrices = 3 if arch.gated_mlp else 2
    if arch.is_mla:
        qk_head_dim = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        if arch.q_lora_rank:
            q_replicated = hidden * arch.q_lora_rank + arch.q_lora_rank
            q_split = arch.q_lora_rank * arch.num_attention_heads * qk_head_dim
        else:
            q_replicated, q_split = 0, hidden * arch.num_attention_heads * qk_head_dim
        kv_a = hidden * (arch.kv_lora_rank + arch.qk_rope_head_dim) + arch.kv_lora_rank
        kv_b = arch.kv_lora_rank * arch.num_attention_heads * (arch.qk_nope_head_dim + arch.v_head_dim)
        out = arch.num_attention_heads * arch.v_head_dim * hidden
        attention_split, attention_kv, attention_replicated = q_split + kv_b + out, 0, q_replicated + kv_a
    else:
        q_dim = arch.num_attention_heads * arch.head_dim
        kv_dim = arch.num_kv_heads * arch.head_dim
        attention_split = 2 * hidden * q_dim + (q_dim if arch.qkv_bias else 0)
        attention_kv = 2 * hidden * kv_dim + (2 * kv_dim if arch.qkv_bias else 0)
        attention_replicated = 0
    dense_layers = layers - arch.num_moe_layers
    experts = arch.num_moe_layers * arch.num_experts * mlp_matrices * hidden * arch.moe_intermediate_size
    shared = arch.num_moe_layers * mlp_matrices * hidden * arch.shared_expert_intermediate_size
    return ParameterGroups(
        embedding=arch.vocab_size * hidden,
        lm_head=0 if arch.tie_word_embeddings else arch.vocab_size * hidden,
        attention_split=layers * attention_split,
        attention_kv=layers * attention_kv,
        attention_replicated=layers * attention_replicated,
        dense_mlp=dense_layers * mlp_matrices * hidden * arch.intermediate_size,
        experts=experts,
        shared_experts=shared,
        router=arch.num_moe_layers * hidden * arch.num_experts,
        norms=(2 * layers + 1) * hidden,
        vision=arch.vision_parameters,
    )


# ----------------------------------------------------------------------------------------------------
# config.json


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a Hugging Face config.json, with errors that name the file."""
    field = f"config {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SizingError(field, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise SizingError(field, f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})") from None
    try:
        config = json.loads(text)
    except RecursionError:
        raise SizingError(field, "not valid JSON (nested too deeply)") from None
    except json.JSONDecodeError as exc:
        raise SizingError(
            field, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(config, dict):
        raise SizingError(field, "not a JSON object")
    return config


@dataclass(frozen=True)
class _QwenVisionTower:
    """How one Qwen-VL generation builds its vision tower from `vision_config` (vllm/model_executor/models/
    qwen2_vl.py, qwen2_5_vl.py and qwen3_vl.py@v0.13.0: Qwen2VisionTransformer, Qwen2_5_VisionTransformer,
    Qwen3_VisionTransformer)."""

    width_key: str  # the tower's own width; Qwen2-VL's `hidden_size` is the projector's output
    layer_norm: bool  # LayerNorm (weight and bias), else RMSNorm (weight)
    gated_mlp: bool  # gate, up and down projections, else fc1 and fc2; all with biases
    patch_bias: bool  # the Conv3d patch embedding has a bias
    learned_positions: bool  # `num_position_embeddings` learned rows of the width
    # transformers' vision config defaults (Qwen2VLVisionConfig, Qwen2_5_VLVisionConfig, Qwen3VLVisionConfig)
    # for the keys a config.json leaves out
    defaults: Mapping[str, Any]


_SHARED_TOWER_DEFAULTS = {"in_channels": 3, "spatial_merge_size": 2, "temporal_patch_size": 2}
_QWEN3_VL_TOWER = _QwenVisionTower(
    "hidden_size",
    layer_norm=True,
    gated_mlp=False,
    patch_bias=True,
    learned_positions=True,
    defaults={
        **_SHARED_TOWER_DEFAULTS,
        "depth": 27,
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "patch_size": 16,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [8, 16, 24],
    },
)
_QWEN_VISION_TOWERS = {
    "qwen2_vl": _QwenVisionTower(
        "embed_dim",
        layer_norm=True,
        gated_mlp=False,
        patch_bias=False,
        learned_positions=False,
        defaults={**_SHARED_TOWER_DEFAULTS, "depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "patch_size": 14},
    ),
    "qwen2_5_vl": _QwenVisionTower(
        "hidden_size",
        layer_norm=False,
        gated_mlp=True,
        patch_bias=False,
        learned_positions=False,
        defaults={
            **_SHARED_TOWER_DEFAULTS,
            "depth": 32,
            "hidden_size": 3584,
            "intermediate_size": 3420,
            "patch_size": 14,
        },
    ),
    "qwen3_vl": _QWEN3_VL_TOWER,
    "qwen3_vl_moe": _QWEN3_VL_TOWER,
}


@dataclass(frozen=True)
class _QwenTowerShape:
    """A Qwen-VL vision tower's sizes, its config's or transformers' defaults."""

    tower: _QwenVisionTower
    width: int
    layers: int
    mlp: int  # the MLP's intermediate width
    out: int  # the merger's output: the language model's width
    patch: int
    frames: int  # temporal_patch_size: frames one patch spans
    channels: int
    merge: int  # spatial_merge_size: patches per embedding along each side
    deepstack: int  # Qwen3-VL's extra mergers
    positions: int  # learned position rows (Qwen3-VL)


def _qwen_tower_shape(config: Mapping[str, Any], text_hidden: int, source: str) -> _QwenTowerShape | None:
    """The Qwen-VL tower of a config whose family has one (None for any other)."""
    tower = _QWEN_VISION_TOWERS.get(str(config.get("model_type") or ""))
    vision_config = config.get("vision_config")
    if tower is None or not isinstance(vision_config, Mapping):
        return None
    stated = {key: value for key, value in vision_config.items() if value is not None}
    read = _ConfigReader({**tower.defaults, **stated}, f"{source}: vision_config")
    width = read.integer(tower.width_key, limit="hidden_size", lowest=1)
    if tower.width_key == "embed_dim":
        mlp = int(width * _positive_number(read.get("mlp_ratio"), f"{read.source}: mlp_ratio", 64))
        out = read.integer("hidden_size", default=text_hidden, limit="hidden_size", lowest=1)
    else:
        mlp = read.integer("intermediate_size", limit="intermediate_size", lowest=1)
        out = read.integer("out_hidden_size", default=text_hidden, limit="hidden_size", lowest=1)
    return _QwenTowerShape(
        tower=tower,
        width=width,
        layers=read.integer("depth", limit="num_layers", lowest=1),
        mlp=mlp,
        out=out,
        patch=read.integer("patch_size", limit="head_dim", lowest=1),
        frames=read.integer("temporal_patch_size", limit="head_dim", lowest=1),
        channels=read.integer("in_chans", "in_channels", limit="head_dim", lowest=1),
        merge=read.integer("spatial_merge_size", limit="head_dim", lowest=1),
        deepstack=len(read.integers("deepstack_visual_indexes", limit="num_layers")),
        positions=read.integer("num_position_embeddings", limit="max_position_embeddings")
        if tower.learned_positions
        else 0,
    )


def _qwen_vision_parameters(shape: _QwenTowerShape) -> int:
    """A Qwen-VL vision tower's parameters: `depth` blocks (two norms, q/k/v and the output projection with
    biases, the MLP), the Conv3d patch embedding over `temporal_patch_size` frames, learned positions on
    Qwen3-VL, and the patch merger (a norm, then two linear layers with biases from the
    `spatial_merge_size`² merged patches into the language model), with one more merger per deepstack
    layer on Qwen3-VL. Exact against the published totals less their text decoders: Qwen2-VL-7B's
    675,759,104, Qwen2.5-VL-7B's 676,550,144 and Qwen3-VL-8B's 576,388,336."""
    tower, width, mlp = shape.tower, shape.width, shape.mlp
    norm = 2 if tower.layer_norm else 1  # parameters per element of a norm
    mlp_params = (3 * width * mlp + 2 * mlp if tower.gated_mlp else 2 * width * mlp + mlp) + width
    block = 2 * norm * width + 3 * width * width + 3 * width + width * width + width + mlp_params
    merged = width * shape.merge * shape.merge
    merger_linears = merged * merged + merged + merged * shape.out + shape.out
    return (
        shape.layers * block
        + shape.channels * shape.frames * shape.patch * shape.patch * width
        + (width if tower.patch_bias else 0)
        + shape.positions * width
        + norm * width
        + merger_linears
        + shape.deepstack * (norm * merged + merger_linears)
    )


# The embeddings of the largest image vLLM's profile encodes for a Qwen-VL model: its processor's max_pixels
# over the merged patch's area (Qwen2VLProcessingInfo.get_image_size_with_most_features, qwen2_vl.py@v0.19.1).
# The value is the official checkpoints' preprocessor_config.json (Qwen2/2.5-VL: max_pixels 12,845,056 =
# 28 x 28 x 16,384; Qwen3-VL: longest_edge 16,777,216 = 32 x 32 x 16,384), a file sizing does not read.
QWEN_DUMMY_IMAGE_TOKENS = 16384


def _positive_number(value: object, field: str, highest: int) -> float:
    """A ratio or factor a config gives: a number above 0 and at most `highest`, else one clear error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= highest:
        raise SizingError(field, f"{value!r} is not a number from 0 to {highest}")
    return value


class _ConfigReader:
    """Reads integer fields under any of their family-specific names, with errors naming the key."""

    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        self.config = config
        self.source = source

    def get(self, *keys: str) -> Any:
        return self.found(*keys)[1]

    def found(self, *keys: str) -> tuple[str, Any]:
        """The first of `keys` the config sets, and its value; (first key, None) when none is set."""
        for key in keys:
            if self.config.get(key) is not None:
                return key, self.config[key]
        return keys[0], None

    def integer(
        self,
        *keys: str,
        default: int | None = None,
        required: bool = True,
        limit: str | int = 1 << 30,
        lowest: int = 0,
    ) -> int:
        """An integer under any of `keys`, from `lowest` to `limit` (a `SHAPE_LIMITS` field, or a number)."""
        key, value = self.found(*keys)
        if value is None:
            if default is not None:
                return default
            if required:
                names = " or ".join(f"'{key}'" for key in keys)
                raise SizingError(self.source, f"missing {names}, needed to size the model")
            return 0
        return self._whole(key, value, limit, lowest)

    def integers(self, key: str, *, limit: str | int) -> set[int]:
        """A list of integers under `key` (layer indices), each from 0 to `limit`; empty when unset."""
        values = self.get(key)
        if values is None:
            return set()
        if not isinstance(values, list):
            raise SizingError(f"{self.source}: {key}", f"{values!r} is not a list of integers")
        return {self._whole(key, value, limit, 0) for value in values}

    def text(self, *keys: str) -> str | None:
        """A string under any of `keys` (a dtype name); None when unset."""
        key, value = self.found(*keys)
        if value is not None and not isinstance(value, str):
            raise SizingError(f"{self.source}: {key}", f"{value!r} is not a name such as bfloat16")
        return value

    def _whole(self, key: str, value: object, limit: str | int, lowest: int) -> int:
        highest = SHAPE_LIMITS[limit] if isinstance(limit, str) else limit
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
            or not lowest <= value <= highest
        ):
            # A per-layer list (gemma-3n's intermediate_size) is named, not printed whole
            shown = f"a list of {len(value)} values" if isinstance(value, list) else repr(value)
            raise SizingError(
                f"{self.source}: {key}", f"{shown} is not an integer from {lowest} to {highest:,}"
            )
        return int(value)


def architecture_from_config(
    config: Mapping[str, Any], name: str, parameters: int | None = None, source: str = "config.json"
) -> ModelArchitecture:
    """Build a ModelArchitecture from a Hugging Face config.json mapping.

    Multimodal wrappers (gemma-3, llava, mistral3) keep the language model under `text_config`; its keys
    win, the wrapper supplies the quantization.
    """
    text_config = config.get("text_config")
    merged: dict[str, Any] = dict(config)
    if isinstance(text_config, Mapping) and "num_hidden_layers" not in config:
        merged.update(text_config)
    for nested in _NESTED_SHAPE_CONFIGS:
        if isinstance(config.get(nested), Mapping):
            merged = {**config[nested], **merged}
    family = str(merged.get("model_type") or "custom")
    _refuse_recurrent_layers(merged, family, source)
    defaults = _FAMILY_DEFAULTS.get(family, {"tie_word_embeddings": True})
    read = _ConfigReader({**defaults, **{k: v for k, v in merged.items() if v is not None}}, source)

    hidden = read.integer("hidden_size", "n_embd", "d_model", "model_dim", limit="hidden_size")
    layers = read.integer("num_hidden_layers", "n_layer", "num_layers", "n_layers", limit="num_layers")
    heads = read.integer("num_attention_heads", "n_head", "num_heads", "n_heads", limit="num_attention_heads")
    if heads == 0 or layers == 0 or hidden == 0:
        raise SizingError(source, "hidden size, layers and attention heads must be positive")
    head_dim = read.integer("head_dim", default=hidden // heads, limit="head_dim")
    kv_heads = _kv_heads(read, family, heads)
    vocab = read.integer("vocab_size", "padded_vocab_size", limit="vocab_size")
    intermediate = read.integer(
        "intermediate_size_mlp",  # Llama-4's dense layers; its `intermediate_size` is an expert's
        "intermediate_size",
        "ffn_hidden_size",
        "n_inner",
        "ffn_dim",
        default=4 * hidden,
        limit="intermediate_size",
    )

    num_experts = read.integer(
        "num_local_experts",
        "num_experts",
        "n_routed_experts",
        "moe_num_experts",
        required=False,
        limit="num_experts",
    )
    moe = _moe_shape(read, family, layers, num_experts, intermediate) if num_experts else _NO_MOE
    window, sliding_layers = _sliding_window(read, family, layers)
    native_dtype = normalize_torch_dtype(read.text("torch_dtype", "dtype"))
    max_position = read.integer(
        "max_position_embeddings",
        "n_positions",
        "max_sequence_length",
        "seq_length",
        required=False,
        limit="max_position_embeddings",
    )
    qk_rope_head_dim = read.integer("qk_rope_head_dim", required=False, limit="qk_rope_head_dim")
    qwen_tower = _qwen_tower_shape(config, hidden, source)  # its weights and its profile both read it
    return ModelArchitecture(
        name=name,
        family=family,
        parameters=parameters,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        intermediate_size=intermediate,
        gated_mlp=family not in _UNGATED_MLP_FAMILIES,
        tie_word_embeddings=bool(read.get("tie_word_embeddings", "tie_embeddings")),
        qkv_bias=family in _QKV_BIAS_FAMILIES or bool(read.get("attention_bias", "bias", "qkv_bias")),
        num_experts=num_experts,
        num_experts_per_token=moe.experts_per_token,
        moe_intermediate_size=moe.intermediate_size,
        shared_expert_intermediate_size=moe.shared_intermediate_size,
        num_moe_layers=moe.layers,
        kv_lora_rank=read.integer("kv_lora_rank", required=False, limit="kv_lora_rank"),
        q_lora_rank=read.integer("q_lora_rank", required=False, limit="q_lora_rank"),
        qk_rope_head_dim=qk_rope_head_dim,
        qk_nope_head_dim=read.integer("qk_nope_head_dim", required=False, limit="qk_nope_head_dim"),
        v_head_dim=read.integer("v_head_dim", required=False, limit="v_head_dim"),
        # transformers' DeepseekV32Config: the indexer is there when `index_topk` is
        index_head_dim=read.integer("index_head_dim", default=128, limit="head_dim")
        if read.get("index_topk") is not None
        else 0,
        sliding_window=window,
        num_sliding_window_layers=sliding_layers,
        native_dtype=native_dtype,
        quantization=quantization_from_config(config.get("quantization_config"), source),
        max_position_embeddings=max_position or None,
        vision_parameters=_vision_parameters(config, qwen_tower, hidden, source),
        vision_encoder=_vision_encoder(config, qwen_tower, source),
        rotary_table_positions=_rotary_tables(read, family, max_position, sliding_layers),
        rotary_dim=_rotary_dim(read, qk_rope_head_dim or head_dim),
    )


def _refuse_recurrent_layers(config: Mapping[str, Any], family: str, source: str) -> None:
    """One clear error for a model whose layers keep recurrent state: planned as attention alone, its cache
    per token would be counted for every layer and its per-sequence state not at all."""
    unmodelled = "which the sizing does not model (it plans attention KV caches only)"
    if family in _RECURRENT_FAMILIES:
        raise SizingError(
            f"{source}: model_type",
            f"{family!r} keeps per-sequence recurrent state (state-space or linear-attention layers), "
            f"{unmodelled}",
        )
    key = next((key for key in _RECURRENT_KEYS if config.get(key) is not None), None)
    if key is not None:
        raise SizingError(
            f"{source}: {key}",
            f"{key} describes state-space or linear-attention layers, {unmodelled}",
        )
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list):
        other = sorted({str(kind) for kind in layer_types} - _ATTENTION_LAYER_TYPES)
        if other:
            raise SizingError(
                f"{source}: layer_types",
                f"layer types {', '.join(other)} are not attention "
                f"({' or '.join(sorted(_ATTENTION_LAYER_TYPES))}), {unmodelled}",
            )


def _kv_heads(read: _ConfigReader, family: str, heads: int) -> int:
    """KV heads under every family's spelling; Falcon's depends on which decoder it uses."""
    if family == "falcon" or read.get("multi_query") is not None:
        if read.get("new_decoder_architecture"):
            return read.integer("num_kv_heads", "n_head_kv", "num_key_value_heads", limit="num_kv_heads")
        if read.get("multi_query"):
            return 1
        return heads
    return read.integer(
        "num_key_value_heads",
        "num_kv_heads",
        "n_head_kv",
        "multi_query_group_num",
        "kv_n_heads",
        default=heads,
        limit="num_kv_heads",
    )


@dataclass(frozen=True)
class _MoeShape:
    experts_per_token: int
    intermediate_size: int
    shared_intermediate_size: int
    layers: int


_NO_MOE = _MoeShape(0, 0, 0, 0)


def _moe_shape(
    read: _ConfigReader, family: str, layers: int, num_experts: int, intermediate: int
) -> _MoeShape:
    """Which layers are MoE and how big each expert is, in DeepSeek, Qwen-MoE, Mixtral, gpt-oss, Llama-4,
    DBRX and ERNIE-4.5 terms."""
    expert_size = read.integer(
        "moe_intermediate_size", "intermediate_size", default=intermediate, limit="moe_intermediate_size"
    )
    shared_experts = read.integer(
        "n_shared_experts", "moe_num_shared_experts", required=False, limit="num_experts"
    )
    shared = (shared_experts or _SHARED_EXPERTS.get(family, 0)) * expert_size
    shared += read.integer(
        "shared_expert_intermediate_size", required=False, limit="shared_expert_intermediate_size"
    )
    first_dense = read.integer(
        "first_k_dense_replace", "moe_layer_start_index", required=False, limit="num_layers"
    )
    # ERNIE-4.5's last MoE layer; its default, -1, is the last layer (Ernie4_5_MoeConfig.__post_init__)
    last_moe = read.get("moe_layer_end_index")
    last = layers - 1 if last_moe in (None, -1) else read.integer("moe_layer_end_index", limit="num_layers")
    step = (
        read.integer(
            "decoder_sparse_step",
            "moe_layer_freq",
            "interleave_moe_layer_step",
            "moe_layer_interval",
            default=1,
        )
        or 1
    )
    dense_only = read.integers("mlp_only_layers", limit="num_layers")
    listed = (
        read.integers("moe_layers", limit="num_layers") if isinstance(read.get("moe_layers"), list) else None
    )
    moe_layers = sum(
        1
        for index in range(layers)
        if (
            index in listed
            if listed is not None
            else first_dense <= index <= last and (index + 1) % step == 0
        )
        and index not in dense_only
    )
    experts_per_token = read.integer(
        "num_experts_per_tok",
        "experts_per_token",
        "moe_topk",
        "moe_top_k",
        "moe_k",
        default=1,
        limit="num_experts_per_token",
    )
    return _MoeShape(experts_per_token, expert_size, shared, moe_layers)


def _vision_parameters(
    config: Mapping[str, Any], qwen: _QwenTowerShape | None, text_hidden: int, source: str
) -> int:
    """Parameters of a multimodal checkpoint's ViT encoder (SigLIP, CLIP) and its projector.

    Per layer: q/k/v/o with biases, a two-matrix MLP with biases and two layer norms; then the patch
    convolution, learned positions when the config has an image size, a final norm, and one linear
    projection into the language model's hidden size with its norm. Exact for gemma-3's SigLIP
    (27,432,406,640 with the text decoder); projectors with a second layer (llava's MLP) add a little more.
    Qwen-VL's towers (`qwen`, read by `_qwen_tower_shape`) and Pixtral's are counted by
    `_qwen_vision_parameters` and `_pixtral_vision_parameters`.
    """
    vision_config = config.get("vision_config")
    if not isinstance(vision_config, Mapping):
        return 0
    if qwen is not None:
        return _qwen_vision_parameters(qwen)
    if not vision_config.get("num_hidden_layers"):
        return 0
    if vision_config.get("model_type") == "pixtral":
        return _pixtral_vision_parameters(config, vision_config, text_hidden, source)
    read = _ConfigReader(vision_config, f"{source}: vision_config")
    hidden = read.integer("hidden_size", limit="hidden_size")
    layers = read.integer("num_hidden_layers", limit="num_layers")
    intermediate = read.integer("intermediate_size", default=4 * hidden, limit="intermediate_size")
    patch = read.integer("patch_size", default=14, limit="head_dim")
    channels = read.integer("num_channels", default=3, limit="head_dim")
    image = read.integer("image_size", required=False, limit="max_position_embeddings")
    if hidden == 0 or patch == 0:
        raise SizingError(f"{source}: vision_config", "hidden_size and patch_size must be positive")
    per_layer = (
        4 * hidden * hidden + 4 * hidden + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
    )
    positions = (image // patch) ** 2 * hidden if image else 0
    patch_embedding = channels * patch * patch * hidden + hidden
    projector = hidden * text_hidden + hidden
    return layers * per_layer + patch_embedding + positions + 2 * hidden + projector


def _pixtral_vision_parameters(
    config: Mapping[str, Any], vision_config: Mapping[str, Any], text_hidden: int, source: str
) -> int:
    """Pixtral's tower (transformers' PixtralVisionModel; vllm/model_executor/models/pixtral.py@v0.19.1,
    PixtralHFVisionModel) and its projector. Per layer: q/k/v/o without biases, a gated MLP without biases
    and two RMSNorms; a patch convolution without bias and a pre-norm; 2D rotary positions, so no learned
    ones. Mistral-3 (Mistral3MultiModalProjector) projects through an RMSNorm, a patch merger of
    `spatial_merge_size`² patches and two linear layers, llava (Pixtral-12B) through the two linear layers
    alone; `multimodal_projector_bias` (Mistral-3: off by default, llava: on) gives them biases. Exact for
    Mistral-Small-3.1-24B: 438,958,080, its published total 24,011,361,280 less the text decoder."""
    read = _ConfigReader(vision_config, f"{source}: vision_config")
    hidden = read.integer("hidden_size", default=1024, limit="hidden_size", lowest=1)
    layers = read.integer("num_hidden_layers", limit="num_layers")
    intermediate = read.integer("intermediate_size", default=4096, limit="intermediate_size")
    patch = read.integer("patch_size", default=16, limit="head_dim", lowest=1)
    channels = read.integer("num_channels", default=3, limit="head_dim")
    tower = layers * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden)
    tower += channels * patch * patch * hidden + hidden
    wrapper = _ConfigReader(config, source)
    mistral3 = config.get("model_type") == "mistral3"
    bias_set = config.get("multimodal_projector_bias")
    bias = bool(bias_set) if isinstance(bias_set, bool) else not mistral3
    projector = hidden * text_hidden + text_hidden * text_hidden + (2 * text_hidden if bias else 0)
    if mistral3:
        merge = wrapper.integer("spatial_merge_size", default=2, limit="head_dim", lowest=1)
        projector += hidden + hidden * merge * merge * hidden
    return tower + projector


def _vision_encoder(
    config: Mapping[str, Any], qwen: _QwenTowerShape | None, source: str
) -> VisionEncoder | None:
    """The encoder's profile shape, for families whose images are one fixed size and a fixed number of
    embeddings (`mm_tokens_per_image`: gemma-3), and Qwen-VL's dynamic-resolution towers at the official
    processor's largest image (`QWEN_DUMMY_IMAGE_TOKENS`). Other dynamic-resolution towers (Pixtral) and
    families whose per-image count was not read are left out."""
    if qwen is not None:
        # The largest image is a grid of merged patches: 16,384 embeddings of merge x merge patches each,
        # a square of 128 x merge patches a side; a patch spans `frames` frames of `channels`
        side = math.isqrt(QWEN_DUMMY_IMAGE_TOKENS) * qwen.merge
        return VisionEncoder(
            hidden_size=qwen.width,
            intermediate_size=qwen.mlp,
            image_size=side * qwen.patch,
            patch_size=qwen.patch,
            channels=qwen.channels * qwen.frames,
            image_tokens=QWEN_DUMMY_IMAGE_TOKENS,
            gated_mlp=qwen.tower.gated_mlp,
            dynamic_resolution=True,
        )
    vision_config = config.get("vision_config")
    family = str(config.get("model_type") or "")
    image_tokens = config.get("mm_tokens_per_image") or _IMAGE_TOKENS_DEFAULTS.get(family)
    if not isinstance(vision_config, Mapping) or not vision_config.get("image_size") or not image_tokens:
        return None
    field = f"{source}: vision_config"
    read = _ConfigReader(vision_config, field)
    hidden = read.integer("hidden_size", limit="hidden_size")
    return VisionEncoder(
        hidden_size=hidden,
        intermediate_size=read.integer("intermediate_size", default=4 * hidden, limit="intermediate_size"),
        image_size=read.integer("image_size", limit="image_size"),
        patch_size=read.integer("patch_size", default=14, limit="image_size"),
        channels=read.integer("num_channels", default=3, limit="head_dim"),
        image_tokens=_ConfigReader(config, source).integer(
            "mm_tokens_per_image", default=image_tokens, limit="max_position_embeddings"
        ),
    )


# Rope types whose table spans max_position x factor positions, and those over the original context x factor
# (vllm/model_executor/layers/rotary_embedding/linear_scaling_rope.py, dynamic_ntk_scaling_rope.py,
# yarn_scaling_rope.py, deepseek_scaling_rope.py@v0.19.0); every other type spans max_position.
_STRETCHED_ROPES = frozenset({"linear", "dynamic"})
_ORIGINAL_STRETCHED_ROPES = frozenset({"yarn", "deepseek_yarn"})
MAX_ROPE_FACTOR = 1024


def _rotary_tables(
    read: _ConfigReader, family: str, max_position: int, sliding_layers: int
) -> tuple[int, ...]:
    """The positions of each distinct rotary table (vLLM's get_rope builds one per distinct configuration):
    `rope_parameters` by layer type (transformers v5) give one table each; gemma-3's v4 config adds its
    sliding layers' unscaled table (models/gemma3.py@v0.19.0, rope_local_base_freq)."""
    if not max_position:
        return ()
    raw = read.get("rope_parameters", "rope_scaling")
    if isinstance(raw, Mapping) and raw and all(isinstance(value, Mapping) for value in raw.values()):
        scalings: list[Mapping[str, Any]] = list(raw.values())
    else:
        scalings = [raw if isinstance(raw, Mapping) else {}]
        if family in ("gemma3", "gemma3_text") and sliding_layers:
            scalings.append({})
    return tuple(_rotary_positions(read, scaling, max_position) for scaling in scalings)


def _rotary_positions(read: _ConfigReader, scaling: Mapping[str, Any], max_position: int) -> int:
    kind = str(scaling.get("rope_type") or scaling.get("type") or "default")
    if kind not in _STRETCHED_ROPES | _ORIGINAL_STRETCHED_ROPES:
        return max_position
    factor = _positive_number(scaling.get("factor"), f"{read.source}: rope factor", MAX_ROPE_FACTOR)
    base = max_position
    if kind in _ORIGINAL_STRETCHED_ROPES:
        original = _ConfigReader(scaling, f"{read.source}: rope")
        base = original.integer("original_max_position_embeddings", limit="max_position_embeddings")
    return int(base * factor)


def _rotary_dim(read: _ConfigReader, head_dim: int) -> int:
    """The rotary width: the head (MLA: its rope part) times `partial_rotary_factor`."""
    factor = read.get("partial_rotary_factor")
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
        return head_dim
    return int(head_dim * factor)


def _sliding_window(read: _ConfigReader, family: str, layers: int) -> tuple[int | None, int]:
    """The window and how many layers use it: from `layer_types`, the family's pattern, or all layers."""
    window = read.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None, 0
    window = read.integer("sliding_window", limit="sliding_window")
    layer_types = read.get("layer_types")
    if isinstance(layer_types, list):
        sliding = sum(1 for kind in layer_types if kind == "sliding_attention")
    elif family == "gemma2":
        sliding = (layers + 1) // 2  # even layers slide, odd layers attend globally
    elif family in ("gemma3", "gemma3_text"):
        pattern = read.integer("sliding_window_pattern", default=6, lowest=1)
        sliding = sum(1 for index in range(layers) if (index + 1) % pattern != 0)
    elif family in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if not read.get("use_sliding_window"):
            return None, 0
        sliding = layers - read.integer("max_window_layers", default=layers, limit=layers)
    elif family in _ALL_LAYERS_SLIDING_FAMILIES:
        sliding = layers
    else:
        return None, 0
    return (window, sliding) if sliding else (None, 0)


MAX_WEIGHT_BITS = 16  # no quantized format stores a weight in more


def quantization_from_config(raw: Any, source: str = "config.json") -> Quantization | None:
    """A checkpoint's `quantization_config` as a Quantization, for the formats engines load."""
    if not isinstance(raw, Mapping):
        return None
    method = str(raw.get("quant_method") or raw.get("quantization_method") or "").lower()
    field = f"{source}: quantization_config"
    read = _ConfigReader(raw, field)
    if method in ("gptq", "awq", "gptq_marlin", "awq_marlin", "auto-round", "autoround"):
        bits = read.integer("bits", "w_bit", default=4, limit=MAX_WEIGHT_BITS, lowest=1)
        group = read.integer("group_size", "q_group_size", default=128, limit=1 << 20, lowest=-1)
        # GPTQ stores packed zero points even when symmetric; AWQ always does.
        return Quantization(
            method=method.split("_")[0],
            bits=bits,
            group_size=group if group > 0 else None,
            zero_point_bits=bits,
            symmetric=method.startswith("gptq") and raw.get("sym") is True,
        )
    if method in ("fp8", "fbgemm_fp8", "modelopt"):
        return Quantization(method="fp8", bits=8)
    if method == "mxfp4":
        return Quantization(method="mxfp4", bits=4, group_size=32, scale_bytes=1.0, experts_only=True)
    if method == "bitsandbytes":
        if raw.get("load_in_4bit"):
            return Quantization(method="bitsandbytes", bits=4, group_size=64, scale_bytes=4.0)
        return Quantization(method="bitsandbytes", bits=8)
    if method == "compressed-tensors":
        return _compressed_tensors(raw, field)
    if method:
        raise SizingError(
            field,
            f"quant_method {method!r} is not supported "
            "(gptq, awq, fp8, compressed-tensors, mxfp4, bitsandbytes)",
        )
    return None


def _compressed_tensors(raw: Mapping[str, Any], field: str) -> Quantization:
    """compressed-tensors keeps the weight format per config group; the first group describes the linears."""
    groups = raw.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        raise SizingError(field, "compressed-tensors without config_groups")
    first = next(iter(groups.values()))
    if not isinstance(first, Mapping):
        raise SizingError(f"{field}: config_groups", f"{first!r} is not an object of a group's settings")
    weights = first.get("weights") or {}
    if not isinstance(weights, Mapping):
        raise SizingError(f"{field}: config_groups", f"{weights!r} is not an object of weight settings")
    read = _ConfigReader(weights, f"{field}: config_groups: weights")
    bits = read.integer("num_bits", default=8, limit=MAX_WEIGHT_BITS, lowest=1)
    kind = str(weights.get("type") or "int")
    group = read.integer("group_size", required=False, limit=1 << 20, lowest=-1)
    method = "fp8" if kind == "float" and bits == 8 else "compressed-tensors"
    asymmetric = weights.get("symmetric") is False
    return Quantization(
        method=method,
        bits=bits,
        group_size=group if group > 0 else None,
        zero_point_bits=bits if asymmetric else 0,
    )
