"""How an engine reads its command line, so that no extra argument can contradict the plan.

Each engine module declares, as data read from its argument parser's source, the flags the plan owns
or that change memory or parallelism (`governed`: refused in extraArgs) and the flags the planner reads
from extraArgs instead (`planned`: the plan is computed with their values and writes them itself). The
matching here follows the parsers' own rules, because an engine takes more spellings than it documents:

* Python's argparse (vLLM, SGLang) accepts any unambiguous prefix of a long option
  (`--gpu-memory-util=0.99`), a short option with its value attached (`-qfp8`), and `=` or a separate
  value; vLLM's parser also reads `_` as `-` in option names (`--gpu_memory_utilization`) and takes
  `--option.key` (and `-o.key`) for JSON fields.
* Rust's clap (TGI's launcher) takes long options only whole, clusters short flags (`-ep8000`), and
  reads every option from an environment variable of the same name too (`CUDA_MEMORY_FRACTION`).

A prefix that also fits other options is ambiguous to argparse and stops the engine at start-up, so it
is refused too: nothing admitted may fail later.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

# Variables that decide which GPUs a container sees: the device plugin sets them for the GPUs the plan
# requested; `NVIDIA_VISIBLE_DEVICES=all` would expose every GPU of the node.
GPU_VISIBILITY_VARIABLES = frozenset(
    {
        "NVIDIA_VISIBLE_DEVICES",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_DRIVER_CAPABILITIES",
        "NVIDIA_MIG_CONFIG_DEVICES",
    }
)

# Variables that change how memory is allocated under every engine, against what the plan replays: PyTorch's
# caching allocator at its default settings (sizing/allocator.py; PYTORCH_ALLOC_CONF is the name from
# PyTorch 2.9), and CUDA's lazy module loading (sizing/cuda_context.py).
MEMORY_VARIABLES = (
    (
        "PYTORCH_CUDA_ALLOC_CONF",
        "configures PyTorch's caching allocator, which the plan replays at its defaults",
    ),
    (
        "PYTORCH_ALLOC_CONF",
        "configures PyTorch's caching allocator, which the plan replays at its defaults",
    ),
    ("PYTORCH_NO_CUDA_MEMORY_CACHING", "turns off PyTorch's caching allocator, which the plan replays"),
    ("CUDA_MODULE_LOADING", "sets when CUDA loads kernels; the plan sizes the context of lazy loading"),
    # NCCL's buffers on each GPU grow with the buffer size and the channel count: NVLink SHARP alone takes
    # channels x 2 x (buffer + 2 MiB) per peer (src/transport/nvls.cc@v2.17.1-1, ncclNvlsSetup; the
    # sizes in src/init.cc@v2.17.1-1, computeBuffSizes; the channels in src/graph/connect.cc@v2.17.1-1).
    # The plan's tensor-parallel margin is measured at NCCL's defaults.
    *(
        (f"NCCL_{name}", "sizes NCCL's GPU buffers, which the plan takes at NCCL's defaults")
        for name in (
            "BUFFSIZE",
            "LL_BUFFSIZE",
            "LL128_BUFFSIZE",
            "MIN_NCHANNELS",
            "MAX_NCHANNELS",
            "MIN_NRINGS",
            "MAX_NRINGS",
            "MIN_CTAS",
            "MAX_CTAS",
            "NVLS_NCHANNELS",
        )
    ),
)


# Features that take GPU memory the plan does not size: refused, so that what admission accepts fits.
LORA = "LoRA adapters' memory is not planned; serve a checkpoint with the adapter merged instead"
SPECULATIVE = "a draft model's memory is not planned; serve without speculative decoding instead"
KV_CONNECTOR = "a KV connector's buffers are not planned; serve without --kv-transfer-config instead"
# What every parser does with its help and version options: print, exit 0, and the container restarts.
EXITS = "the server would print and exit at once, and restart for ever; run the image by hand to read it"
# Each of them in words, for reports of runs that used one (`vramgate calibrate`).
UNSIZED_FEATURES = {
    LORA: "LoRA adapters",
    SPECULATIVE: "speculative decoding",
    KV_CONNECTOR: "a KV connector",
}


def _dashes(option: str) -> str:
    return "--" if option.startswith("--") else "-"


class OptionSyntax(StrEnum):
    """Which parser reads the engine's command line."""

    ARGPARSE = "argparse"  # Python, allow_abbrev=True (the default)
    CLAP = "clap"  # Rust, without infer_long_args (the default)


@dataclass(frozen=True)
class GovernedFlag:
    """A flag set through the spec, never in extraArgs: every option string the parser defines for it,
    and what to do instead (`set spec.gpu.count instead`)."""

    spellings: tuple[str, ...]
    instead: str
    from_environment: bool = True  # clap reads it from a variable too (its help and version: no)
    # A switch whose bare form says what the plan counts on: it passes alone, and only a value (attached,
    # or a word after it) is refused.
    bare_passes: bool = False
    sets: str | None = None  # the PlanRequest field the bare switch turns on (the plan counts it)


@dataclass(frozen=True)
class PlannedFlag:
    """A flag the planner reads from extraArgs (a legitimate choice that changes memory); the plan is
    computed with its value and writes it. `field` names the PlanRequest field it sets."""

    spellings: tuple[str, ...]
    field: str
    choices: tuple[int, ...] = ()  # the values the engine accepts, when it restricts them


@dataclass(frozen=True)
class Argument:
    """A governed or planned flag found in extraArgs: where (its value may be the next entry), which
    flag under which spelling, and its value if it has one."""

    indices: tuple[int, ...]
    flag: GovernedFlag | PlannedFlag
    spelling: str
    value: str | None


@dataclass(frozen=True)
class CommandLine:
    """An engine's argument parser, as far as the plan is concerned; `source` says where it was read."""

    syntax: OptionSyntax
    source: str
    governed: tuple[GovernedFlag, ...]
    planned: tuple[PlannedFlag, ...] = ()
    underscores_are_dashes: bool = False  # vLLM's FlexibleArgumentParser
    # Variables the engine reads (not as an option) that change what the plan sizes: (name, why refused).
    governed_variables: tuple[tuple[str, str], ...] = ()
    repeatable: tuple[str, ...] = ()  # clap's options that take a list; any other may appear once

    def repeated(self, arguments: Sequence[str]) -> tuple[int, str] | None:
        """Under clap, the first long option written a second time and its index: clap stops at start
        on it (argparse takes the last); None when there is none. A planned flag may repeat: the plan
        takes the last and writes it once."""
        if self.syntax is not OptionSyntax.CLAP:
            return None
        planned = {spelling for flag in self.planned for spelling in flag.spellings}
        seen: set[str] = set()
        for index, argument in enumerate(arguments):
            option = argument.partition("=")[0]
            if not option.startswith("--") or option == "--" or option in (*self.repeatable, *planned):
                continue
            if option in seen:
                return index, option
            seen.add(option)
        return None

    def flags(self) -> Iterator[GovernedFlag | PlannedFlag]:
        yield from self.governed
        yield from self.planned

    def environment_variables(self) -> dict[str, GovernedFlag | PlannedFlag]:
        """Variables the engine reads a governed or planned flag from (clap's `env`: `--num-shard` is
        NUM_SHARD), refused in env like the flags in extraArgs."""
        if self.syntax is not OptionSyntax.CLAP:
            return {}
        return {
            spelling[2:].upper().replace("-", "_"): flag
            for flag in self.flags()
            for spelling in flag.spellings
            if spelling.startswith("--") and (isinstance(flag, PlannedFlag) or flag.from_environment)
        }

    def recognise(self, arguments: Sequence[str]) -> list[Argument]:
        """The governed and planned flags among `arguments`, with the value each one carries (attached,
        or the next argument)."""
        found: list[Argument] = []
        skip_next = False
        for index, argument in enumerate(arguments):
            if skip_next:
                skip_next = False
                continue
            match = self._match(argument)
            if match is None:
                continue
            flag, spelling, value = match
            if value is None and index + 1 < len(arguments):
                following = arguments[index + 1]
                if isinstance(flag, PlannedFlag) or (flag.bare_passes and not following.startswith("-")):
                    value, skip_next = following, True
            found.append(Argument((index, index + 1) if skip_next else (index,), flag, spelling, value))
        return found

    def _match(self, argument: str) -> tuple[GovernedFlag | PlannedFlag, str, str | None] | None:
        if not argument.startswith("-") or argument in ("-", "--"):
            return None
        option, equals, value = argument.partition("=")
        attached = value if equals else None
        if self.syntax is OptionSyntax.CLAP:
            return self._match_clap(option, attached)
        if option.startswith("--"):
            name = option[2:].split(".", 1)[0].rstrip("+")  # `--json-option.key` sets a field of it
            if self.underscores_are_dashes:
                name = name.replace("_", "-")
            return self._match_prefix(f"--{name}", attached)
        # vLLM sets a JSON field through a short option as through a long one (`-cc.key=value`)
        if (matched := self._match_prefix(option.split(".", 1)[0], attached)) is not None:
            return matched
        # A one-letter short option takes its value attached: `-qfp8` is `-q fp8`.
        for flag in self.flags():
            if option[:2] in flag.spellings and len(option) > 2:
                return flag, option[:2], option[2:]
        return None

    def _match_prefix(
        self, option: str, value: str | None
    ) -> tuple[GovernedFlag | PlannedFlag, str, str | None] | None:
        """argparse's rule: an exact option wins; otherwise a prefix of one or more options, refused when
        it begins any flag's spelling (one flag: that flag; several options: ambiguous, a start-up error).
        Checked against the parsers' full option lists of every release read: two exact options of some
        releases begin a governed spelling and land here, vLLM's --device (v0.8.5 to v0.9.2; from v0.24.0
        an abbreviation of --device-ids) and -dc (a diffusion model's config from v0.24.0; before, -dcp).
        The table does not tell releases apart, so both are refused, the reading under which nothing
        admitted fails."""
        for flag in self.flags():
            for spelling in flag.spellings:
                if spelling == option or (spelling.startswith(option) and len(option) > len(_dashes(option))):
                    return flag, spelling, value
        return None

    def _match_clap(
        self, option: str, value: str | None
    ) -> tuple[GovernedFlag | PlannedFlag, str, str | None] | None:
        if option.startswith("--"):
            for flag in self.flags():
                if option in flag.spellings:
                    return flag, option, value
            return None
        # Short flags cluster, and the first one that takes a value takes the rest: any governed letter
        # in the cluster is that flag.
        for flag in self.flags():
            for spelling in flag.spellings:
                if len(spelling) == 2 and spelling[1] in option[1:]:
                    return flag, spelling, value
        return None
