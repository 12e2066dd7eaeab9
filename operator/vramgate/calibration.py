"""Compare the planner with real engine start-up logs.

Reads a CSV of engine starts (the columns of benchmarks/calibration/vllm_startup_logs.csv: model config,
GPU, fraction, max model len, what the engine printed) and re-plans each row with the engine's own
settings fixed, so predicted and reported weights and KV-cache capacity can be set side by side. Rows
are never special-cased: each goes through the same `plan()` a deployment does.

Every row belongs to one of two splits, decided by where it came from (`split_of`): the fit split may
inform the engine model; the held-out split only measures it. Errors are signed (prediction / report - 1):
a positive KV error over-promises memory the engine does not have.
"""

from __future__ import annotations

import csv
import hashlib
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vramgate.sizing import catalog
from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.catalog import GpuType, load_model, unknown_gpu
from vramgate.sizing.engines import Engine, EngineBuild, definition, engine_model
from vramgate.sizing.engines.options import UNSIZED_FEATURES, GovernedFlag
from vramgate.sizing.errors import SizingError
from vramgate.sizing.planner import Plan, PlanRequest, plan
from vramgate.sizing.precision import KvCacheDtype, Precision
from vramgate.sizing.units import GIB

# Acceptance bounds of the calibration: weights within 2% on every row; vLLM's KV capacity within
# 5% median and no row off by more than 15% or 0.5 GiB per GPU, whichever is larger; on the current vLLM
# generation a 3% median, no row over-predicting by more than 1% and none off by more than 10%; SGLang and
# TGI within 10% on every row.
WEIGHTS_TOLERANCE = 0.02
KV_MEDIAN_TOLERANCE = 0.05
KV_ROW_TOLERANCE = 0.15
KV_ROW_TOLERANCE_BYTES = GIB // 2
CURRENT_VLLM_KV_MEDIAN_TOLERANCE = 0.03
CURRENT_VLLM_KV_ROW_TOLERANCE = 0.10
OTHER_ENGINES_KV_ROW_TOLERANCE = 0.10

CURRENT_VLLM = "vLLM >=0.8"

_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# A KV error above this over-promises: the plan would let more sequences in than the cache holds.
KV_OVER_PROMISE_TOLERANCE = 0.01

# One source in HELD_OUT_ONE_IN is held out (the first 8 bytes of the SHA-256 of its key, modulo), except the
# sources of the rows the engine model was fitted to before the split existed: those stay in the fit split.
HELD_OUT_ONE_IN = 2
FITTED_BEFORE_SPLIT = frozenset(
    {"R03", "R04", "R09", "R10", "R14", "R19", "R20", "R22", "R24", "R26", "R28", "R32", "R35", "R36", "R37"}
)


class Split(StrEnum):
    FIT = "fit"
    HELD_OUT = "held-out"


_THREAD = re.compile(r"github\.com/([^/]+)/([^/]+)/(issues|pull|discussions)/(\d+)")
_REPOSITORY = re.compile(r"github\.com/([^/]+)/([^/#?]+)")


def source_key(url: str) -> str:
    """The source a row came from: `owner/repo#N` for an issue, pull request or discussion (any comment of
    it), `owner/repo` for a file in a repository (any commit or path), else the URL without its anchor."""
    thread = _THREAD.search(url)
    if thread:
        return f"{thread[1]}/{thread[2]}#{thread[4]}".lower()
    repository = _REPOSITORY.search(url)
    if repository:
        return f"{repository[1]}/{repository[2]}".lower()
    return url.split("#", maxsplit=1)[0].strip().lower()


def split_of(key: str, fitted_sources: frozenset[str]) -> Split:
    """Fit or held-out, the same for every row of one source, and stable as rows are added."""
    if key in fitted_sources:
        return Split.FIT
    digest = hashlib.sha256(key.encode()).digest()
    return Split.HELD_OUT if int.from_bytes(digest[:8], "big") % HELD_OUT_ONE_IN == 0 else Split.FIT


_RELEASE = re.compile(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?(?!\.?dev)")


def engine_generation(engine: str, version: str) -> str:
    """The report's engine group: SGLang, TGI, or vLLM before/from 0.8 (the V1 engine's first default
    release) by the first release number the row's version column names; source builds (`0.1.devN`) and
    rows that name none form their own group."""
    name = _engine(engine)
    if name is Engine.SGLANG:
        return "SGLang"
    if name is Engine.TGI:
        return "TGI"
    match = _RELEASE.search(version or "")
    if match is None or (int(match[1]), int(match[2])) < (0, 2):
        return "vLLM, release not shown"
    return CURRENT_VLLM if (int(match[1]), int(match[2])) >= (0, 8) else "vLLM <0.8"


# vLLM's log line for a start that loads its torch.compile from the cache (compilation/backends.py@v0.19.1):
# a row whose settings quote it is planned as such a start, which times no kernels.
_COMPILE_CACHE_HIT = "directly load the compiled graph"
# Settings that size the profile's batch: a row that says one was changed but not what to has no
# conservative stand-in (a larger batch leaves a smaller KV cache, without bound).
_BATCH_SETTINGS = ("max_num_seqs", "max_num_batched_tokens")


def _unplanned_features(engine: Engine, settings: str) -> list[str]:
    """The features whose memory the plan does not size that a row's settings show, read the way the
    engine's parser reads them, with the flags the operator refuses for them: a row that ran one cannot be
    re-planned as it ran."""
    found = definition(engine).command_line.recognise((settings or "").split())
    return [
        f"{UNSIZED_FEATURES[argument.flag.instead]} ({argument.spelling})"
        for argument in found
        if isinstance(argument.flag, GovernedFlag) and argument.flag.instead in UNSIZED_FEATURES
    ]


def _eager(engine: Engine, settings: str) -> bool:
    """Whether a row ran without CUDA graphs: the bare switch as the engine's parser reads it (not
    `--enforce-eager=false`), or the offline class's `enforce_eager=True`."""
    found = definition(engine).command_line.recognise((settings or "").split())
    switched = any(
        isinstance(argument.flag, GovernedFlag)
        and argument.flag.sets == "engine_eager"
        and argument.value is None
        for argument in found
    )
    return switched or re.search(r"enforce_eager\s*=\s*True", settings or "") is not None


def _set_but_not_shown(settings: str, name: str) -> bool:
    """Whether one clause of the free-text settings says `name` was set but its value is "not shown" (a
    clause saying only "not shown" leaves the release's default, which the plan takes)."""
    clauses = (settings or "").split(";")
    said = any(name in c and re.search(r"\bset\b", c) and "not shown" in c for c in clauses)
    return said and _setting(settings, name) is None


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text or "")
    return float(match[0]) if match else None


def _setting(settings: str, *names: str) -> int | None:
    """`max_num_seqs=192`, `--max-num-seqs 192` style settings from the free-text column."""
    for name in names:
        pattern = name.replace("_", "[_-]")
        match = re.search(rf"{pattern}\s*[=:\s]\s*(\d+)", settings or "")
        if match:
            return int(match[1])
    return None


def gpu_from_description(description: str, cuda_total_gib: float | None) -> GpuType | None:
    """The catalog GPU a log names ("NVIDIA A100 80GB", "NVIDIA Tesla T4"); a GPU the log does not name
    ("not stated ...") or one the catalog lacks ("NVIDIA RTX A6000") is None: it is planned as the CLI
    plans a GPU known only by its memory (the logged total, and the assumptions that leave the smaller KV
    cache where its kernels and padding rules decide), never as a guessed catalog type. Without a logged
    total there is nothing to plan it by: an error."""
    text = description.lower()
    best: tuple[int, GpuType] | None = None
    for gpu in catalog.gpu_catalog().values():
        tokens = [t for t in re.split(r"[-\s]+", gpu.name.lower()) if t]
        if all(re.search(rf"(?<![a-z0-9]){re.escape(t)}(?![a-z0-9])", text) for t in tokens) and (
            best is None or len(tokens) > best[0]
        ):
            best = (len(tokens), gpu)
    if best is not None:
        return best[1]
    if cuda_total_gib is None:
        raise SizingError("gpu_model", f"{description!r} names no catalog GPU and no total memory is logged")
    return None


@dataclass(frozen=True)
class Reported:
    """What the engine printed, per GPU."""

    weights_gib: float | None
    kv_cache_gib: float | None
    kv_cache_tokens: int | None


@dataclass(frozen=True)
class CalibrationRow:
    row_id: str
    model: str
    gpu: str
    tensor_parallel: int
    engine_version: str
    predicted: Plan | None
    reported: Reported
    skipped: str | None = None
    source: str = ""
    split: Split = Split.FIT
    generation: str = ""

    @property
    def weights_error(self) -> float | None:
        if self.predicted is None or not self.reported.weights_gib:
            return None
        return self.predicted.weights_bytes_per_gpu / (self.reported.weights_gib * GIB) - 1

    @property
    def predicted_kv_gib(self) -> float | None:
        if self.predicted is None:
            return None
        return self.predicted.kv_capacity_bytes_per_gpu / GIB

    @property
    def kv_error(self) -> float | None:
        """Relative error of KV capacity: in tokens when the engine printed them, else in GiB."""
        if self.predicted is None:
            return None
        if self.reported.kv_cache_tokens:
            return self.predicted.kv_capacity_tokens / self.reported.kv_cache_tokens - 1
        if self.reported.kv_cache_gib and self.predicted_kv_gib is not None:
            return self.predicted_kv_gib / self.reported.kv_cache_gib - 1
        return None

    @property
    def kv_error_gib(self) -> float | None:
        """Absolute error of the KV cache per GPU in GiB."""
        if self.kv_error is None or self.predicted_kv_gib is None:
            return None
        reported = self.reported.kv_cache_gib
        predicted = self.predicted
        if not reported and predicted is not None and self.reported.kv_cache_tokens:
            # Printed tokens at the predicted bytes per printed token (at the model's own per-token cost
            # for a prediction of no cache at all)
            per_token = (
                predicted.kv_capacity_bytes_per_gpu / predicted.kv_capacity_tokens
                if predicted.kv_capacity_tokens
                else predicted.kv_bytes_per_token_per_gpu
            )
            reported = self.reported.kv_cache_tokens * per_token / GIB
        return self.predicted_kv_gib - (reported or 0.0)

    @property
    def kv_within_bounds(self) -> bool | None:
        if self.kv_error is None or self.kv_error_gib is None:
            return None
        return (
            abs(self.kv_error) <= KV_ROW_TOLERANCE or abs(self.kv_error_gib) * GIB <= KV_ROW_TOLERANCE_BYTES
        )


def _precision(dtype: str, quantization: str) -> Precision:
    """The weights' precision of an unquantized checkpoint: online fp8 if the engine quantized it,
    else the logged compute dtype."""
    if "fp8" in (quantization or "").lower():
        return Precision.FP8
    text = (dtype or "").lower()
    if "bfloat16" in text or "bf16" in text:
        return Precision.BF16
    if "float16" in text or "fp16" in text:
        return Precision.FP16
    if "float32" in text or "fp32" in text:
        return Precision.FP32
    return Precision.AUTO


def _engine(name: str) -> Engine:
    text = name.lower()
    if "sglang" in text:
        return Engine.SGLANG
    if "tgi" in text or "text-generation" in text:
        return Engine.TGI
    return Engine.VLLM


def _weights_reported(row: dict[str, str]) -> float | None:
    if row.get("weights_gib_profile"):
        return _first_number(row["weights_gib_profile"])
    printed = row.get("weights_loaded_as_printed", "")
    match = re.search(r"took\s+(\d+(?:\.\d+)?)\s*Gi?B", printed)
    if match:
        return float(match[1])
    # SGLang prints the free memory before and after loading the weights.
    begin = re.search(r"begin avail mem=(\d+(?:\.\d+)?)", printed)
    end = re.search(r"end avail mem=(\d+(?:\.\d+)?)", printed)
    return float(begin[1]) - float(end[1]) if begin and end else None


def _kv_tokens_reported(row: dict[str, str]) -> int | None:
    """KV capacity in tokens: printed directly, as blocks x block size, or in the error a refused start
    prints ("... the maximum number of tokens that can be stored in KV cache (N)")."""
    if row.get("kv_cache_tokens"):
        return int(_first_number(row["kv_cache_tokens"]) or 0) or None
    blocks, block = _first_number(row.get("gpu_blocks", "")), _first_number(row.get("block_size", ""))
    if blocks and block:
        return int(blocks * block)
    return int(_first_number(row.get("kv_tokens_from_error_msg", "")) or 0) or None


def _kv_gib_reported(row: dict[str, str]) -> float | None:
    text = row.get("kv_cache_gib", "")
    # SGLang prints K and V pools separately ("2.82 (K) + 2.82 (V) GB"); several PP stages print "a / b".
    if "(K)" in text and "(V)" in text:
        return sum(float(n) for n in _NUMBER.findall(text.split("GB")[0]))
    return _first_number(text)


_UNVERIFIED = "unverified"


def _model(row: dict[str, str], configs_dir: Path) -> ModelArchitecture:
    """The row's config.json when it names one that exists, else the catalog entry of its model id.

    A `config_file` of "unverified: why" records a row whose config.json could not be established."""
    named = (row.get("config_file") or "").strip()
    if named.lower().startswith(_UNVERIFIED):
        raise SizingError("config_file", f"config.json not established ({named.partition(':')[2].strip()})")
    config = configs_dir / Path(named or "missing").name
    return load_model(str(config) if config.is_file() else row["model_id"])


def _engine_version(text: str) -> str | None:
    """The version a row states; "not shown/not stated (...)" states none, though it may say V0."""
    if text.lower().startswith("not"):
        return "V0" if re.search(r"\bV0\b", text) else None
    return text or None


def calibrate_row(row: dict[str, str], configs_dir: Path, split: Split = Split.FIT) -> CalibrationRow:
    """Re-plan one logged engine start with its own settings."""
    reported = Reported(_weights_reported(row), _kv_gib_reported(row), _kv_tokens_reported(row))
    tensor_parallel = int(_first_number(row["tensor_parallel_size"]) or 1)
    base = CalibrationRow(
        row_id=row["row_id"],
        model=row["model_id"],
        gpu=row["gpu_model"],
        tensor_parallel=tensor_parallel,
        engine_version=row.get("engine_version", ""),
        predicted=None,
        reported=reported,
        source=source_key(row.get("source_url", "")),
        split=split,
        generation=engine_generation(row.get("engine", ""), row.get("engine_version", "")),
    )
    missing = [
        name for name in ("gpu_memory_utilization", "max_model_len") if not _first_number(row.get(name, ""))
    ]
    if _engine(row.get("engine", "")) is Engine.SGLANG:  # its releases' defaults are modelled
        missing = [name for name in missing if name != "gpu_memory_utilization"]
    settings = row.get("other_relevant_settings", "")
    quoted = settings.lower()  # the log lines the settings quote, matched whatever their case
    missing += [name for name in _BATCH_SETTINGS if _set_but_not_shown(settings, name)]
    if missing:
        return _skip(base, f"{' and '.join(missing)} not in the log")
    try:
        engine = _engine(row["engine"])
        if unplanned := _unplanned_features(engine, settings):
            return _skip(base, f"ran with {' and '.join(unplanned)}, whose memory the plan does not size")
        logged_total = _first_number(row.get("gpu_total_mem_gib_logged", ""))
        gpu = gpu_from_description(row["gpu_model"], logged_total)
        block = _first_number(row.get("block_size", ""))
        model = _model(row, configs_dir)
        pipeline_parallel = int(_first_number(row.get("pipeline_parallel_size", "1")) or 1)
        max_num_batched_tokens = _setting(
            settings, "max_num_batched_tokens", "chunked_prefill_size", "max_batch_prefill_tokens"
        )
        engine_version = _engine_version(row.get("engine_version", ""))
        max_num_seqs = _setting(settings, "max_num_seqs", "max_running_requests")
        memory_fraction = _first_number(row["gpu_memory_utilization"])
        if memory_fraction is None:
            gpu_type = gpu or unknown_gpu(round((logged_total or 0) * GIB))
            memory_fraction = engine_model(
                engine, EngineBuild(engine_version), gpu_type
            ).default_memory_fraction(
                gpu_type, tensor_parallel, pipeline_parallel, model, max_num_batched_tokens, max_num_seqs
            )
            if memory_fraction is None:
                return _skip(
                    base,
                    "gpu_memory_utilization not in the log, and the release's default for this model is "
                    "not modelled",
                )
        request = PlanRequest(
            model=model,
            model_source=row["model_id"],
            # The dtype column is the compute dtype; a quantized checkpoint keeps its own format.
            precision=Precision.AUTO
            if model.quantization
            else _precision(row.get("dtype", ""), row.get("quantization", "")),
            kv_cache_dtype=KvCacheDtype.FP8
            if "fp8" in row.get("kv_cache_dtype", "").lower()
            else KvCacheDtype.AUTO,
            max_seq_len=int(_first_number(row["max_model_len"]) or 0),
            concurrency=1,
            engine=engine,
            engine_version=engine_version,
            # The install's sampler shows in the log; without that line it is unknown.
            engine_flashinfer=True if "flashinfer for top-p" in quoted else None,
            engine_offline="offline llm()" in quoted,
            engine_eager=_eager(engine, settings),
            engine_compile_cached=_COMPILE_CACHE_HIT in quoted,
            gpu=gpu,
            gpu_count=tensor_parallel,
            pipeline_parallel=pipeline_parallel,
            memory_fraction=memory_fraction,
            gpu_memory_bytes_override=round(logged_total * GIB) if logged_total else None,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            block_size=int(block) if block and engine is Engine.VLLM else None,
        )
        return CalibrationRow(**{**base.__dict__, "predicted": plan(request)})
    except (SizingError, ValueError) as exc:
        return _skip(base, str(exc))


def _skip(row: CalibrationRow, why: str) -> CalibrationRow:
    return CalibrationRow(**{**row.__dict__, "skipped": why})


# The columns a row is read by without a default (the others may be missing or empty).
REQUIRED_COLUMNS = (
    "row_id",
    "engine",
    "model_id",
    "gpu_model",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "weights_gib_profile",
    "kv_cache_tokens",
)


def calibrate(csv_path: Path, configs_dir: Path | None = None) -> list[CalibrationRow]:
    """Re-plan every row of a start-up log CSV; configs live beside it under configs/ by default."""
    configs = configs_dir or csv_path.parent / "configs"
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows, columns = list(reader), reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as error:
        raise SizingError(str(csv_path), f"not a UTF-8 CSV file ({error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise SizingError(str(csv_path), f"missing the column(s) {', '.join(missing)}")
    rows = [{key: value or "" for key, value in row.items() if key is not None} for row in rows]
    fitted = frozenset(
        source_key(r.get("source_url", "")) for r in rows if r["row_id"] in FITTED_BEFORE_SPLIT
    )
    return [calibrate_row(r, configs, split_of(source_key(r.get("source_url", "")), fitted)) for r in rows]


@dataclass(frozen=True)
class Summary:
    """Errors over a set of rows; KV figures are relative (prediction / report - 1)."""

    weights_rows: int
    weights_max_error: float
    kv_rows: int
    kv_median_error: float
    kv_rows_out_of_bounds: list[str]
    kv_median_signed_error: float = 0.0
    kv_max_over_prediction: float | None = None  # the largest positive error; None when no row over-predicts
    kv_max_under_prediction: float | None = None  # the most negative error; None when no row under-predicts
    kv_rows_over_promising: tuple[str, ...] = ()


def summarize(rows: list[CalibrationRow]) -> Summary:
    weights = [abs(r.weights_error) for r in rows if r.weights_error is not None]
    signed = [r.kv_error for r in rows if r.kv_error is not None]
    return Summary(
        weights_rows=len(weights),
        weights_max_error=max(weights, default=0.0),
        kv_rows=len(signed),
        kv_median_error=statistics.median(abs(e) for e in signed) if signed else 0.0,
        kv_rows_out_of_bounds=[r.row_id for r in rows if r.kv_within_bounds is False],
        kv_median_signed_error=statistics.median(signed) if signed else 0.0,
        kv_max_over_prediction=max((e for e in signed if e > 0), default=None),
        kv_max_under_prediction=min((e for e in signed if e < 0), default=None),
        kv_rows_over_promising=tuple(
            r.row_id for r in rows if r.kv_error is not None and r.kv_error > KV_OVER_PROMISE_TOLERANCE
        ),
    )


def summarize_by(rows: list[CalibrationRow], key: Callable[[CalibrationRow], str]) -> dict[str, Summary]:
    """One summary per group (split, engine generation), groups in first-seen order."""
    groups: dict[str, list[CalibrationRow]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return {name: summarize(members) for name, members in groups.items()}


def missed_targets(rows: list[CalibrationRow]) -> list[str]:
    """Each acceptance bound (above) that `rows` miss, in words; empty when they meet them all."""
    missed: list[str] = []
    kv = [r for r in rows if r.kv_error is not None]
    if not kv:
        return ["no row reports its KV capacity"]
    heavy = [
        r.row_id for r in rows if r.weights_error is not None and abs(r.weights_error) > WEIGHTS_TOLERANCE
    ]
    if heavy:
        missed.append(f"weights off by more than {WEIGHTS_TOLERANCE:.0%}: {', '.join(heavy)}")

    def errors(members: list[CalibrationRow]) -> list[float]:
        return [r.kv_error for r in members if r.kv_error is not None]

    def rows_beyond(members: list[CalibrationRow], bound: float) -> list[str]:
        return [r.row_id for r in members if r.kv_error is not None and abs(r.kv_error) > bound]

    vllm = [r for r in kv if r.generation.startswith("vLLM")]
    if vllm and statistics.median(abs(e) for e in errors(vllm)) > KV_MEDIAN_TOLERANCE:
        missed.append(f"vLLM KV median error above {KV_MEDIAN_TOLERANCE:.0%}")
    outside = [r.row_id for r in vllm if r.kv_within_bounds is False]
    if outside:
        missed.append(f"vLLM KV off by more than {KV_ROW_TOLERANCE:.0%} and 0.5 GiB: {', '.join(outside)}")
    current = [r for r in kv if r.generation == CURRENT_VLLM]
    if current and statistics.median(abs(e) for e in errors(current)) > CURRENT_VLLM_KV_MEDIAN_TOLERANCE:
        missed.append(f"{CURRENT_VLLM} KV median error above {CURRENT_VLLM_KV_MEDIAN_TOLERANCE:.0%}")
    over = [r.row_id for r in current if (r.kv_error or 0.0) > KV_OVER_PROMISE_TOLERANCE]
    if over:
        missed.append(
            f"{CURRENT_VLLM} KV over-promised by more than {KV_OVER_PROMISE_TOLERANCE:.0%}: {', '.join(over)}"
        )
    far = rows_beyond(current, CURRENT_VLLM_KV_ROW_TOLERANCE)
    if far:
        missed.append(
            f"{CURRENT_VLLM} KV off by more than {CURRENT_VLLM_KV_ROW_TOLERANCE:.0%}: {', '.join(far)}"
        )
    others = rows_beyond(
        [r for r in kv if not r.generation.startswith("vLLM")], OTHER_ENGINES_KV_ROW_TOLERANCE
    )
    if others:
        missed.append(
            f"SGLang/TGI KV off by more than {OTHER_ENGINES_KV_ROW_TOLERANCE:.0%}: {', '.join(others)}"
        )
    return missed
