"""The `vramgate` / `kubectl-vramgate` executable: a light front that loads a command only when it runs.

The commands (`vramgate.cli`) pull in the sizing core and the catalogs (pydantic too, where they read the
spec); `--help`, `--version` and shell completion scripts need none of that, so the group lists the
commands from a table here and imports `vramgate.cli` on first use of one. A test keeps the table equal
to the commands' own help.

Exit status: 0 fits (or allowed), 1 does not fit (or refused), 2 bad input. Bad input is one line on
stderr, never a traceback.
"""

from __future__ import annotations

import importlib
import os.path
import sys
from collections.abc import Sequence

import click
from click.shell_completion import get_completion_class

from vramgate import __version__

EXIT_FITS, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT = 0, 1, 2
SHELLS = ("bash", "zsh", "fish")

# name -> one-line help, as each command in vramgate.cli states it (a test compares them).
COMMANDS = {
    "calibrate": "Compare predictions with real engine start-up logs (a CSV like benchmarks/calibration/).",
    "check": "Run the admission webhook's exact decision on manifests, offline (for CI and GitOps).",
    "crd": "Print the LLMDeployment CustomResourceDefinition generated from the spec models.",
    "gpus": "List the built-in GPU catalog.",
    "models": "List the built-in model catalog.",
    "plan": "Plan one deployment: GPU type and count, memory fraction, max batch, and the whole field.",
}


class _LazyGroup(click.Group):
    """Lists the commands from `COMMANDS`; imports `vramgate.cli` only to run or complete one."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*COMMANDS, *self.commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        commands: click.Group = importlib.import_module("vramgate.cli").cli
        return commands.commands[cmd_name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listing = {**COMMANDS, **{name: c.get_short_help_str(80) for name, c in self.commands.items()}}
        with formatter.section("Commands"):
            formatter.write_dl(sorted(listing.items()))


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, prog_name="vramgate")
def cli() -> None:
    """Size LLM serving deployments to their GPUs: weights, KV cache and runtime overhead."""


@cli.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> int:
    """Print the shell completion script: `source <(vramgate completion bash)`."""
    root = ctx.find_root()
    prog = root.info_name or "vramgate"
    complete_var = "_{}_COMPLETE".format(prog.replace("-", "_").replace(" ", "_").upper())
    completion = get_completion_class(shell)
    if completion is None:  # click ships all three; a missing one is a broken install
        raise click.ClickException(f"this click has no {shell} completion")
    click.echo(completion(root.command, {}, prog, complete_var).source())
    return EXIT_FITS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; map every failure to one line on stderr and the documented exit status."""
    # os.path, not pathlib: `--help` would import pathlib (and urllib, ipaddress) for this alone.
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "vramgate"
    prog = "kubectl vramgate" if prog == "kubectl-vramgate" else "vramgate"
    try:
        status = cli.main(
            args=list(argv) if argv is not None else None, prog_name=prog, standalone_mode=False
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return EXIT_FITS
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo(f"{prog}: aborted", err=True)
        return EXIT_BAD_INPUT
    except Exception as exc:
        # Only a command raises these, so vramgate.cli is loaded by then.
        line = importlib.import_module("vramgate.cli").bad_input_line(exc)
        if line is None:
            raise
        click.echo(f"{prog}: error: {line}", err=True)
        return EXIT_BAD_INPUT
    return status if isinstance(status, int) else EXIT_FITS


if __name__ == "__main__":
    sys.exit(main())
