"""Weights and KV-cache bytes: the two figures every engine allocates the same way.

Per-GPU figures assume tensor parallelism the way vLLM, SGLang and TGI shard a model: the vocabulary,
attention heads and MLP columns are split, norms and routers are replicated, a GPU holds at least one
KV head (heads replicate when there are fewer KV heads than GPUs), and MLA's latent cache is replicated
on every GPU.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum

from vramgate.sizing.architecture import ModelArchitecture, ParameterGroups, parameter_groups
from vramgate.sizing.errors import SizingError
from vramgate.sizing.precision import (
    DTYPE_BYTES,
    KvCacheDtype,
    Precision,
    Quantization,
    quantization_for_precision,
)
from vramgate.sizing.units import ceil_div

STATED_PARAMETERS_TOLERANCE = 0.02


@dataclass(frozen=True)
class WeightFormat:
    """How the weights of one deployment are stored: 16/32-bit tensors plus optionally quantized linears."""

    compute_dtype: str  # fp32/bf16/fp16: activations, and every tensor the quantizer leaves alone
    quantization: Quantization | None

    @property
    def compute_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def label(self) -> str:
        """What a person calls it: `bf16`, `int4 (gptq, group 128)`, `fp8`."""
        if self.quantization is None:
            return self.compute_dtype
        quant = self.quantization
        detail = quant.method if quant.group_size is None else f"{quant.method}, group {quant.group_size}"
        return f"{quant.precision.value} ({detail})" if quant.method != "fp8" else "fp8"


def resolve_weight_format(arch: ModelArchitecture, precision: Precision) -> WeightFormat:
    """The storage a deployment will really have, checking the request against the checkpoint.

    A pre-quantized checkpoint runs in its own format; asking it for another precision is an error, not
    a silent re-interpretation. Engines load fp32 checkpoints in 16 bits unless fp32 is asked for.
    """
    native = arch.native_dtype if arch.native_dtype in ("bf16", "fp16") else "bf16"
    if arch.quantization is not None:
        stored = arch.quantization.precision
        if precision not in (Precision.AUTO, stored):
            raise SizingError(
                "precision",
                f"{arch.name} is a pre-quantized {stored.value} checkpoint ({arch.quantization.method}); "
                f"use precision 'auto' or '{stored.value}', not {precision.value!r}",
            )
        return WeightFormat(native, arch.quantization)
    if precision is Precision.AUTO:
        return WeightFormat(native, None)
    if precision in (Precision.FP32, Precision.BF16, Precision.FP16):
        return WeightFormat(precision.value, None)
    return WeightFormat(native, quantization_for_precision(precision))


def kv_element_bytes(kv_dtype: KvCacheDtype, weights: WeightFormat) -> int:
    """Bytes of one cached K or V element; `auto` follows the compute dtype, as the engines do."""
    if kv_dtype is KvCacheDtype.AUTO:
        return weights.compute_bytes
    return DTYPE_BYTES[kv_dtype.value]


class MxSwizzle(Enum):
    """How triton_kernels lays out MXFP4 expert weights for Hopper's matmul (vLLM's Triton MoE backend).

    Both swizzle the scales with their rows padded to 256 (HopperMXScaleLayout with 8 warps), and vLLM holds
    the expert biases in fp32 for them."""

    # triton_kernels v3.5.0 (tensor_details/layout_details/hopper_value.py): the packed bytes pad only to its
    # tile, 16 rows by 32 bytes
    TILES = "v3.5.0"
    # triton_kernels v3.6.0: both dimensions of the packed bytes first pad to multiples of 64
    PADDED_64 = "v3.6.0"


@dataclass(frozen=True)
class ExpertPadding:
    """Engines' MoE kernels want aligned expert matrices: each GPU's slice of the expert intermediate
    size and the hidden size are rounded up to these multiples (vLLM's MXFP4 Marlin layout: 128 and 256);
    `swizzle` adds the bytes of a Hopper MXFP4 layout, `bias_bytes` a bias per output row of each expert
    matrix (vLLM's MXFP4 method gives every expert w13 and w2 biases, over the padded sizes)."""

    intermediate_multiple: int
    hidden_multiple: int
    swizzle: MxSwizzle | None = None
    checkpoint_scales_kept: bool = True  # the swizzled scales are a copy beside the checkpoint's
    bias_bytes: int = 0  # bytes per expert bias element (0: the layout has none)


MXFP4_BLOCK = 32  # weights per MXFP4 scale


def swizzled_expert_extra_bytes(
    intermediate: int, hidden: int, swizzle: MxSwizzle, checkpoint_scales_kept: bool
) -> int:
    """Bytes one MXFP4 expert takes beyond its packed weights and scales as counted, once triton_kernels
    has swizzled it for Hopper: w13 is stored 2·intermediate x hidden/2 bytes, w2 hidden x
    intermediate/2 (vllm/model_executor/layers/quantization/utils/mxfp4_utils.py _swizzle_mxfp4)."""
    matrices = ((2 * intermediate, hidden), (hidden, intermediate))  # (output rows, input width) each
    extra = 0
    for rows, width in matrices:
        packed = width // 2
        if swizzle is MxSwizzle.TILES:
            stored = _round_up(rows, 16) * _round_up(packed, 32)
        else:
            stored = _round_up(rows, 64) * _round_up(packed, 64)
        extra += stored - rows * packed
        scales = width // MXFP4_BLOCK
        extra += _round_up(rows, 256) * _round_up(scales, 2) - (
            0 if checkpoint_scales_kept else rows * scales
        )
    return extra


def _round_up(value: int, multiple: int) -> int:
    return ceil_div(value, multiple) * multiple


@dataclass(frozen=True)
class WeightsBytes:
    total: int  # all copies summed over the GPUs of one replica
    per_gpu: int


@dataclass(frozen=True)
class PipelineStage:
    """The consecutive layers one pipeline-parallel stage holds; the first also holds the embedding,
    the last the lm_head (its own copy even when tied) and the sampler."""

    index: int
    count: int
    first_layer: int
    layers: int

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    def layers_in(self, start: int, stop: int) -> int:
        """How many of the layers [start, stop) this stage holds."""
        return max(0, min(stop, self.first_layer + self.layers) - max(start, self.first_layer))


def pipeline_stages(num_layers: int, pipeline_parallel: int) -> list[PipelineStage]:
    """Split layers the way vLLM does: evenly, the remainder going to the stages before the last."""
    sizes = [num_layers // pipeline_parallel] * pipeline_parallel
    for offset in range(2, num_layers % pipeline_parallel + 2):
        sizes[-offset] += 1
    starts = [sum(sizes[:index]) for index in range(pipeline_parallel)]
    return [
        PipelineStage(index, pipeline_parallel, start, size)
        for index, (start, size) in enumerate(zip(starts, sizes, strict=True))
    ]


def weights_bytes(
    arch: ModelArchitecture,
    weights: WeightFormat,
    tensor_parallel: int,
    expert_padding: ExpertPadding | None = None,
    stage: PipelineStage | None = None,
) -> WeightsBytes:
    """Resident weight bytes per GPU and summed over the tensor-parallel group (of one pipeline stage).

    Quantizers leave embeddings, lm_head, norms, routers and a vision encoder in the compute dtype (the
    encoder is split over TP like the vocabulary); group-wise formats add
    their scales and zero points per group; expert-only formats (MXFP4) also leave attention and dense
    MLPs alone. MoE models keep their dense layers first (DeepSeek's first_k_dense_replace).
    """
    stage = stage or pipeline_stages(arch.num_layers, 1)[0]
    all_groups = parameter_groups(arch)
    groups = _stage_groups(arch, all_groups, stage)
    # A stated parameter count that the shape does not reproduce (an explicit architecture given with
    # only a few dimensions) wins: every group is scaled to it.
    scale = 1.0
    if arch.parameters and abs(all_groups.total / arch.parameters - 1) > STATED_PARAMETERS_TOLERANCE:
        scale = arch.parameters / all_groups.total
    tp = tensor_parallel
    experts_per_gpu = groups.experts / tp
    swizzled_extra = expert_biases = 0
    if expert_padding is not None and arch.is_moe:
        padded_intermediate = _round_up(
            ceil_div(arch.moe_intermediate_size, tp), expert_padding.intermediate_multiple
        )
        padded_hidden = _round_up(arch.hidden_size, expert_padding.hidden_multiple)
        matrices = 3 if arch.gated_mlp else 2
        moe_layers = stage.layers_in(arch.num_layers - arch.num_moe_layers, arch.num_layers)
        experts_per_gpu = moe_layers * arch.num_experts * matrices * padded_intermediate * padded_hidden
        bias_rows = (matrices - 1) * padded_intermediate + padded_hidden  # w13's (or w1's) and w2's outputs
        expert_biases = moe_layers * arch.num_experts * bias_rows * expert_padding.bias_bytes
        if expert_padding.swizzle is not None:
            swizzled_extra = (
                moe_layers
                * arch.num_experts
                * swizzled_expert_extra_bytes(
                    padded_intermediate,
                    padded_hidden,
                    expert_padding.swizzle,
                    expert_padding.checkpoint_scales_kept,
                )
            )
    quant = weights.quantization
    plain = weights.compute_bytes
    linear = quant.bytes_per_weight() if quant else plain
    experts = linear
    if quant is not None and quant.experts_only:
        linear = plain
    kv_heads_per_gpu = max(1, arch.num_kv_heads // tp)
    kv_share = kv_heads_per_gpu / arch.num_kv_heads
    per_gpu = (
        (groups.embedding + groups.lm_head + groups.vision) * plain / tp
        + (groups.attention_split + groups.dense_mlp + groups.shared_experts) * linear / tp
        + groups.attention_kv * kv_share * linear
        + groups.attention_replicated * linear
        + experts_per_gpu * experts
        + (groups.router + groups.norms) * plain
        + swizzled_extra
        + expert_biases
    )
    per_gpu *= scale
    return WeightsBytes(total=round(per_gpu * tp), per_gpu=round(per_gpu))


VOCAB_PADDING = 64  # vLLM pads the vocabulary to a multiple of this before splitting it over TP ranks


def weight_tensor_sizes(
    arch: ModelArchitecture, weights: WeightFormat, tensor_parallel: int, stage: PipelineStage | None = None
) -> Counter[int]:
    """How many tensors of each byte size one GPU of a stage allocates for its embedding, lm_head and the
    linears of its attention and dense MLP layers, fused as vLLM builds them (qkv_proj, o_proj,
    gate_up_proj, down_proj); a group-wise quantized linear is its packed weight, scales and zero points.
    MLA projections and MoE experts are left out: what an allocator rounds per tensor, they are few."""
    stage = stage or pipeline_stages(arch.num_layers, 1)[0]
    tp, hidden = tensor_parallel, arch.hidden_size
    sizes: Counter[int] = Counter()
    vocab_bytes = ceil_div(_round_up(arch.vocab_size, VOCAB_PADDING), tp) * hidden * weights.compute_bytes
    sizes[vocab_bytes] += int(stage.is_first) + int(
        stage.is_last and not (arch.tie_word_embeddings and stage.is_first)
    )
    quant = weights.quantization
    if quant is not None and quant.experts_only:
        quant = None
    linears: list[tuple[int, int, int]] = []  # (input width, output width, how many in the stage)
    if not arch.is_mla:
        q_width = arch.num_attention_heads // tp * arch.head_dim
        kv_width = max(1, arch.num_kv_heads // tp) * arch.head_dim
        linears += [(hidden, q_width + 2 * kv_width, stage.layers), (q_width, hidden, stage.layers)]
    dense = stage.layers_in(0, arch.num_layers - arch.num_moe_layers)
    intermediate = ceil_div(arch.intermediate_size, tp)
    gate_up = (2 if arch.gated_mlp else 1) * intermediate
    linears += [(hidden, gate_up, dense), (intermediate, hidden, dense)]
    for width_in, width_out, count in linears:
        if quant is None:
            sizes[width_in * width_out * weights.compute_bytes] += count
            continue
        sizes[width_in * width_out * quant.bits // 8] += count
        if quant.group_size:
            groups = ceil_div(width_in, quant.group_size) * width_out
            sizes[int(groups * quant.scale_bytes)] += count
            if quant.zero_point_bits:
                sizes[groups * quant.zero_point_bits // 8] += count
    sizes.pop(0, None)
    return sizes


def _stage_groups(arch: ModelArchitecture, groups: ParameterGroups, stage: PipelineStage) -> ParameterGroups:
    """The parameters one pipeline stage holds."""
    if stage.count == 1:
        return groups
    layers = arch.num_layers
    dense_layers = layers - arch.num_moe_layers
    share = stage.layers / layers
    dense_share = stage.layers_in(0, dense_layers) / dense_layers if dense_layers else 0.0
    moe_share = stage.layers_in(dense_layers, layers) / arch.num_moe_layers if arch.num_moe_layers else 0.0
    return ParameterGroups(
        embedding=groups.embedding if stage.is_first else 0,
        lm_head=arch.vocab_size * arch.hidden_size if stage.is_last else 0,
        attention_split=round(groups.attention_split * share),
        attention_kv=round(groups.attention_kv * share),
        attention_replicated=round(groups.attention_replicated * share),
        dense_mlp=round(groups.dense_mlp * dense_share),
        experts=round(groups.experts * moe_share),
        shared_experts=round(groups.shared_experts * moe_share),
        router=round(groups.router * moe_share),
        norms=round(groups.norms * share),
        vision=groups.vision if stage.is_first else 0,
    )


# Sparse MLA (DeepSeek-V3.2) in fp8 and its lightning indexer's keys: fp8 values with an fp32 scale per block
# of this many, the rotary part of the latent kept in bf16 (vllm/v1/attention/backends/mla/flashmla_sparse.py
# and DeepseekV32IndexerCache in model_executor/models/deepseek_v2.py@v0.19.1; SGLang's DSATokenToKVPool in
# srt/mem_cache/memory_pool.py@v0.5.23, the same sizes)
_FP8_SCALE_BLOCK = 128


def _indexer_key_bytes(arch: ModelArchitecture) -> int:
    """The indexer's cached key of one token in one layer, the same on every GPU (none without sparse MLA)."""
    return arch.index_head_dim + arch.index_head_dim // _FP8_SCALE_BLOCK * DTYPE_BYTES["fp32"]


def _mla_entry_bytes(arch: ModelArchitecture, element_bytes: int, alignment: int) -> int:
    """One token's latent and rotary key; sparse MLA in fp8 stores the rotary key in bf16 and an fp32 scale
    per 128 latent elements (656 bytes for DeepSeek-V3.2, against 576 for plain fp8)."""
    if arch.index_head_dim and element_bytes == DTYPE_BYTES["fp8"]:
        scales = ceil_div(arch.kv_lora_rank, _FP8_SCALE_BLOCK) * DTYPE_BYTES["fp32"]
        return arch.kv_lora_rank + scales + arch.qk_rope_head_dim * DTYPE_BYTES["bf16"]
    latent = arch.kv_lora_rank + arch.qk_rope_head_dim
    return ceil_div(latent, alignment) * alignment * element_bytes


def kv_bytes_per_token_per_layer(
    arch: ModelArchitecture,
    element_bytes: int,
    tensor_parallel: int,
    mla_head_size: int | None = None,
    mla_latent_alignment: int = 1,
) -> int:
    """KV bytes one token takes in one layer on one GPU.

    MLA caches the compressed latent plus the rotary key, the same on every GPU, its elements rounded up
    to a multiple of `mla_latent_alignment` where the engine aligns the entry, unless the engine keeps it
    as full K and V per head of `mla_head_size` (vLLM before 0.7.1); sparse MLA adds its indexer's key.
    Others cache K and V for the KV heads the GPU holds.
    """
    head_dim = arch.head_dim
    if arch.is_mla:
        if mla_head_size is None:
            return _mla_entry_bytes(arch, element_bytes, mla_latent_alignment) + _indexer_key_bytes(arch)
        head_dim = mla_head_size
    kv_heads_per_gpu = max(1, arch.num_kv_heads // tensor_parallel)
    return 2 * kv_heads_per_gpu * head_dim * element_bytes


@dataclass(frozen=True)
class KvLayout:
    """The paged KV cache of one deployment on one GPU.

    Sliding-window layers (`num_sliding_window_layers`, 0 where the engine keeps them whole) are paged the
    way vLLM's hybrid allocator does: layers are grouped, equally many per group, by attention type (the
    group size is the smaller type's layer count, or the larger's when it is below `larger_group_below`
    times the smaller's); each group takes blocks from one pool, and a block spans a whole group, padding
    included.
    """

    bytes_per_token_per_layer: int
    num_layers: int
    num_sliding_window_layers: int
    sliding_window: int | None
    block_size_tokens: int
    larger_group_below: float = 1.0  # 1.0: the group size is always the smaller type's count

    @property
    def bytes_per_token(self) -> int:
        """One token over all layers: the model's own figure."""
        return self.bytes_per_token_per_layer * self.num_layers

    @property
    def group_size(self) -> int:
        full, sliding = self.num_layers - self.num_sliding_window_layers, self.num_sliding_window_layers
        if not full or not sliding:
            return self.num_layers
        smaller, larger = sorted((full, sliding))
        return larger if larger < self.larger_group_below * smaller else smaller

    @property
    def group_counts(self) -> tuple[int, int]:
        """How many full-attention and sliding-window groups the layers form."""
        full = self.num_layers - self.num_sliding_window_layers
        return ceil_div(full, self.group_size), ceil_div(self.num_sliding_window_layers, self.group_size)

    @property
    def bytes_per_block(self) -> int:
        """One block of every group: what a token of capacity costs ("GPU KV cache size: N tokens")."""
        return (
            self.bytes_per_token_per_layer * self.group_size * sum(self.group_counts) * self.block_size_tokens
        )

    @property
    def bytes_per_group_block(self) -> int:
        """One block of one group: the unit the engine divides its pool into (page size x group size)."""
        return self.bytes_per_token_per_layer * self.group_size * self.block_size_tokens

    def capacity_tokens(self, kv_budget_bytes: int) -> int:
        """Tokens that whole blocks of a KV budget hold in every group at once."""
        if kv_budget_bytes <= 0:
            return 0
        return kv_budget_bytes // self.bytes_per_block * self.block_size_tokens

    def context_tokens(self, kv_budget_bytes: int, sequence_tokens: int, max_batched_tokens: int) -> int:
        """Tokens of context a KV budget holds when every sequence is `sequence_tokens` long: as many such
        sequences as its blocks hold, fractions included, times that length (sliding-window groups keep
        only their window, so a hybrid model holds more context than `capacity_tokens`)."""
        if kv_budget_bytes <= 0:
            return 0
        blocks = kv_budget_bytes // self.bytes_per_group_block
        blocks_per_sequence = self.bytes_per_sequence(sequence_tokens, max_batched_tokens) // (
            self.bytes_per_group_block
        )
        return int(blocks / blocks_per_sequence * sequence_tokens)

    def bytes_per_sequence(self, sequence_tokens: int, max_batched_tokens: int) -> int:
        """KV bytes one sequence of `sequence_tokens` takes, in whole blocks.

        A sliding-window group keeps the blocks of `window - 1 + max_num_batched_tokens` tokens, plus one
        for a window that does not start on a block boundary. Never less with larger blocks or a larger
        batch limit: the planner rules options out with the figure at one token of each.
        """
        blocks = ceil_div(sequence_tokens, self.block_size_tokens)
        if not self.num_sliding_window_layers or self.sliding_window is None:
            return self.num_layers * blocks * self.block_size_tokens * self.bytes_per_token_per_layer
        window_tokens = min(sequence_tokens, self.sliding_window - 1 + max_batched_tokens)
        window_blocks = ceil_div(window_tokens, self.block_size_tokens) + 1
        full_groups, sliding_groups = self.group_counts
        group_blocks = full_groups * blocks + sliding_groups * window_blocks
        return group_blocks * self.group_size * self.block_size_tokens * self.bytes_per_token_per_layer


def kv_layout(
    arch: ModelArchitecture,
    element_bytes: int,
    tensor_parallel: int,
    block_size_tokens: int,
    stage: PipelineStage | None = None,
    mla_head_size: int | None = None,
    larger_group_below: float = 1.0,
    mla_latent_alignment: int = 1,
) -> KvLayout:
    """The KV cache layout of `arch` on each of `tensor_parallel` GPUs (of one pipeline stage)."""
    layers = stage.layers if stage else arch.num_layers
    return KvLayout(
        bytes_per_token_per_layer=kv_bytes_per_token_per_layer(
            arch, element_bytes, tensor_parallel, mla_head_size, mla_latent_alignment
        ),
        num_layers=layers,
        num_sliding_window_layers=round(arch.num_sliding_window_layers * layers / arch.num_layers),
        sliding_window=arch.sliding_window,
        block_size_tokens=block_size_tokens,
        larger_group_below=larger_group_below,
    )


@dataclass(frozen=True)
class KvSafetyMargin:
    """What a plan holds back, per GPU, from the KV pool it predicts: a share of the pool plus a fixed
    amount. The plan counts only on the rest, so an engine that gets a little less than predicted still
    holds every sequence the plan admits. Integer arithmetic, so `promised(pool_for(kv)) >= kv` exactly."""

    relative_per_10k: int  # parts per 10,000 of the predicted pool
    absolute_bytes: int

    def promised(self, pool_bytes: int) -> int:
        """The KV bytes a plan counts on out of a predicted pool of `pool_bytes`."""
        kept = pool_bytes * (10_000 - self.relative_per_10k) // 10_000 - self.absolute_bytes
        return max(kept, 0)

    def pool_for(self, kv_bytes: int) -> int:
        """The smallest predicted pool whose promised part holds `kv_bytes` (0 for none)."""
        if kv_bytes <= 0:
            return 0
        return ceil_div((kv_bytes + self.absolute_bytes) * 10_000, 10_000 - self.relative_per_10k)


NO_KV_SAFETY_MARGIN = KvSafetyMargin(0, 0)
