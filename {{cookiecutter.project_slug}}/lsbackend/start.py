"""``python -m lsbackend start``: the production server (gunicorn), as the Docker image runs it.

An entry module that imports only the settings: this process is replaced by gunicorn at once
(``exec``), so anything imported here (Flask, the runtime, the model's libraries) would be imported
again for nothing, and start-up is what a restarted container waits on. ``__main__`` sends ``start``
here without loading the rest of the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import Settings, SettingsError

GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port``, shared by ``start`` and ``serve``."""
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)


def cmd_start(args: argparse.Namespace) -> int:
    """The production server (gunicorn), as the Docker image runs it."""
    Settings.from_env()  # a bad setting stops here with its message, before gunicorn starts
    if args.host:  # gunicorn_conf.py reads both from the environment, as the image sets them
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    # glibc gives each of the worker's threads its own heap arena; big batches leave every arena at its
    # high-water mark. Two arenas cap that (an explicit MALLOC_ARENA_MAX wins); other libcs ignore it.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "lsbackend.wsgi:app"]
    os.execv(sys.executable, argv)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    """``start [--host H] [--port P]``; a bad setting is a message and exit code 1, as in the CLI."""
    parser = argparse.ArgumentParser(prog="python -m lsbackend start", description=cmd_start.__doc__)
    add_server_arguments(parser)
    try:
        return cmd_start(parser.parse_args(argv))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
