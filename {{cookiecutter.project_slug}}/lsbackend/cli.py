"""Command line: ``python -m lsbackend serve|start|check|predict|train``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .app import STARTUP_ERRORS, build_app, build_backend, model_class
from .base import TaskDataError
from .label_config import ConfigError, parse_label_config
from .label_studio_api import annotations_from_tasks
from .settings import Settings

GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


def cmd_serve(args: argparse.Namespace) -> int:
    """Flask's development server: reloads nothing, one process, for trying things out."""
    settings = Settings.from_env()
    build_app(settings).run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """The production server (gunicorn), as the Docker image runs it."""
    Settings.from_env()  # a bad setting stops here with its message, before gunicorn starts
    if args.port:
        os.environ["PORT"] = str(args.port)
    # glibc gives each of the worker's threads its own heap arena; big batches leave every arena at its
    # high-water mark. Two arenas cap that (an explicit MALLOC_ARENA_MAX wins); other libcs ignore it.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    argv = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "lsbackend.wsgi:app"]
    os.execv(sys.executable, argv)
    return 1  # not reached


def cmd_check(args: argparse.Namespace) -> int:
    """Check that a labeling config fits the model in model.py."""
    settings = Settings.from_env()
    path = Path(args.config or settings.label_config_path)
    model = model_class(settings)
    try:
        control, obj = model.check_config(parse_label_config(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        print(f"error: no labeling config at {path}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{path}: {exc.explain()}", file=sys.stderr)
        return 1
    print(f"{path}: fits {model.__name__}: {control.type} {control.name!r} over {obj.type} {obj.name!r}")
    return 0


def _read_json(path: str) -> object:
    with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as fh:
        return json.load(fh)


def cmd_predict(args: argparse.Namespace) -> int:
    """Tasks JSON in, the same tasks with ``predictions`` out, ready to import into Label Studio."""
    backend = build_backend()
    tasks = _read_json(args.tasks)
    # accept tasks or bare data dicts; number tasks without an id so errors can name them
    tasks = [{"id": i, **t} if "data" in t else {"id": i, "data": t} for i, t in enumerate(tasks)]
    predictions = backend.predict(args.project, None, tasks)
    out = [{**task, "predictions": [pred]} for task, pred in zip(tasks, predictions, strict=True)]
    text = json.dumps(out, ensure_ascii=False, indent=2)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train from a Label Studio JSON export; the model is saved as the project's current one."""
    backend = build_backend()
    annotations = annotations_from_tasks(_read_json(args.export))
    status = backend.train(args.project, annotations)
    print(json.dumps(status, indent=2))
    return 0 if status["state"] == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsbackend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("serve", cmd_serve), ("start", cmd_start)):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0])
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.set_defaults(func=func)
    p = sub.add_parser("check", help=cmd_check.__doc__)
    p.add_argument("config", nargs="?", help="labeling config XML (default: LABEL_CONFIG or label_config.xml)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("predict", help=cmd_predict.__doc__)
    p.add_argument("tasks", help="tasks JSON file, or - for stdin")
    p.add_argument("-o", "--output")
    p.add_argument("--project", default="default")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("train", help=cmd_train.__doc__)
    p.add_argument("export", help="Label Studio JSON export, or - for stdin")
    p.add_argument("--project", default="default")
    p.set_defaults(func=cmd_train)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (TaskDataError, ConfigError) as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 1
    except STARTUP_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
