"""The `lorakit` command: the group, and the one place where errors become messages and exit codes.

The commands live in the modules beside this one, by area; they parse options, call the core and
print. Only click is imported at module level in this package so that `lorakit --help` stays fast;
each command imports the core modules it needs.
"""

from __future__ import annotations

import click

from lorakit.cli.batching import batch
from lorakit.cli.calibration import calibrate
from lorakit.cli.cloud import export_group
from lorakit.cli.environment import setup
from lorakit.cli.gui import import_group
from lorakit.cli.planning import dataset, keys, plan, presets, probe
from lorakit.cli.running import doctor, fetch_model, launch, logs, push, runs
from lorakit.errors import CommandExit, ExitCode, GateError, LorakitError


class LorakitGroup(click.Group):
    """Turns lorakit's errors into one clear paragraph and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CommandExit as exc:
            if exc.message:
                click.echo(exc.message, err=True)
            ctx.exit(exc.exit_code)
        except GateError as exc:
            from lorakit.cli.views import console, print_findings

            print_findings(console(stderr=True), [f for f in exc.findings if f.level == "error"])
            hint = exc.fix or "Fix the errors above, or pass --force to write the plan anyway."
            click.echo(f"lorakit: {exc.message.rstrip()} {hint}", err=True)
            ctx.exit(exc.exit_code)
        except LorakitError as exc:
            click.echo(f"lorakit: {exc.render()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("lorakit: interrupted.", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
        except OSError as exc:
            from lorakit.util.files import DISK_FULL_FIX, disk_full_text, is_disk_full

            where = f" ({exc.filename})" if exc.filename else ""
            if is_disk_full(exc):
                click.echo(f"lorakit: cannot write {exc.filename or 'a file'}: {disk_full_text(exc)} "
                           f"[{exc.strerror}].\nFix: {DISK_FULL_FIX}; then run the command again.", err=True)
            else:
                click.echo(f"lorakit: {exc.strerror or exc}{where}.", err=True)
            ctx.exit(ExitCode.FAILED)


EXIT_CODES = """\b
Exit codes:
  0    done (a run that succeeded, a check that passed)
  1    a plan, check or run that failed (what failed is printed, with what to do)
  2    refused before anything ran: a path, option or value to correct (the message says how)
  130  interrupted (Ctrl-C or SIGTERM)"""


@click.group(cls=LorakitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES)
@click.version_option(package_name="lorakit", prog_name="lorakit")
def cli() -> None:
    """Plan, fit, launch and watch SDXL LoRA training with kohya-ss sd-scripts.

    \b
    lorakit probe                      what GPU this machine has
    lorakit presets                    the presets and what they set
    lorakit plan DATASET --preset character --target-gpu rtx4090
    """


for command in (probe, presets, keys, plan, calibrate, export_group, import_group, dataset, fetch_model, push,
                setup, doctor, launch, runs, logs, batch):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="lorakit")


if __name__ == "__main__":
    main()
