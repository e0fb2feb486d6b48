"""`syncd` as a subprocess: `run --once`, then the daemon in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import click

from syncd.demo.common import HOST, STOP_SECONDS, DemoError
from syncd.demo.ports import answers, wait_until

RUN_ONCE_SECONDS = 60.0


def syncd_command(*argv: str) -> list[str]:
    script = Path(sys.executable).with_name("syncd")
    if script.is_file():
        return [str(script), *argv]
    return [sys.executable, "-c", "from syncd.cli import main; main()", *argv]


def run_once() -> None:
    click.echo("$ syncd run --once")
    try:
        done = subprocess.run(
            syncd_command("run", "--once"), capture_output=True, text=True,
            timeout=RUN_ONCE_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DemoError(f"syncd run --once took more than {RUN_ONCE_SECONDS:.0f} s") from None
    if done.returncode != 0:
        raise DemoError(f"syncd run --once failed:\n{done.stderr.strip()}")
    click.echo("  every job ran once: calendars pulled, outbox drained")


def raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_forever(port: int) -> None:
    """`syncd run` in the foreground until Ctrl-C (or SIGTERM); always stopped on the way out."""
    click.echo(f"\n$ syncd run   (listening on http://{HOST}:{port}; Ctrl-C to stop)")
    daemon = subprocess.Popen(syncd_command("run"))
    try:
        wait_until(
            lambda: daemon.poll() is not None or answers(f"http://{HOST}:{port}/healthz"),
            "the daemon",
        )
        if daemon.poll() is not None:
            raise DemoError(f"syncd run exited with status {daemon.returncode}")
        click.echo(
            "Ready: open the links above. It keeps pulling the demo Radicale. Ctrl-C to stop."
        )
        if daemon.wait() != 0:
            raise DemoError(f"syncd run exited with status {daemon.returncode}")
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        stop_process(daemon)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)
