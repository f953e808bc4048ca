"""Command line: ``python -m lsbackend serve|start|worker|check|predict|train|versions|use|evaluate|train-curve``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .app import STARTUP_ERRORS, build_app, build_backend, model_class
from .base import TaskDataError
from .bulk import push_predictions
from .ids import project_key
from .label_config import ConfigError, describe_fit, parse_label_config
from .label_studio_api import LabelStudioClient, LabelStudioError, annotations_from_tasks
from .quality import curve_table, evaluate, evaluation_table, plot_curve, train_curve
from .scoring import EvaluationError
from .service import QueueUnavailable
from .settings import Settings
from .start import add_server_arguments, cmd_start
from .storage import UnknownVersion


def cmd_serve(args: argparse.Namespace) -> int:
    """Flask's development server: reloads nothing, one process, for trying things out."""
    settings = Settings.from_env()
    build_app(settings).run(host=args.host or settings.host, port=args.port or settings.port, threaded=True)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A training worker on Redis + RQ (needs REDIS_URL): trains what the servers queue."""
    settings = Settings.from_env()
    if not settings.redis_url:
        print("error: the worker needs REDIS_URL (the servers' Redis), e.g. REDIS_URL=redis://redis:6379/0; "
              "without it each server trains in a child process and needs no worker", file=sys.stderr)
        return 2
    from .worker import run_worker  # redis and rq: only installed with requirements-redis.txt

    return run_worker(settings)


def cmd_check(args: argparse.Namespace) -> int:
    """Check that a labeling config fits the model in model.py."""
    settings = Settings.from_env()
    path = Path(args.config or settings.label_config_path)
    model = model_class(settings)
    try:
        config = parse_label_config(path.read_text(encoding="utf-8"))
        control, obj = model.check_config(config)
    except FileNotFoundError:
        print(f"error: no labeling config at {path}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{path}: {exc.explain()}", file=sys.stderr)
        return 1
    print(f"{path}: fits {model.__name__}: {describe_fit(config, control, obj)}")
    return 0


def _read_json(path: str) -> Any:  # noqa: ANN401 (whatever the JSON holds; callers check its shape)
    with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as fh:
        return json.load(fh)


def cmd_predict(args: argparse.Namespace) -> int:
    """Tasks JSON in, the same tasks with ``predictions`` out, ready to import into Label Studio;
    or, with --push, pre-annotate a whole Label Studio project."""
    if args.push:
        return cmd_push(args)
    if not args.tasks:
        print("error: give a tasks JSON file (or -), or --push to predict the project in Label Studio",
              file=sys.stderr)
        return 2
    backend = build_backend()
    if backend.pretrained is not None:
        backend.pretrained.wait()  # the server loads MODEL_URI in the background; here we need it now
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


def cmd_push(args: argparse.Namespace) -> int:
    """Page through the project's tasks in Label Studio, predict in batches, store the predictions."""
    from tqdm import tqdm

    settings = Settings.from_env()
    if not (settings.label_studio_url and settings.label_studio_api_key):
        print("error: --push needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY", file=sys.stderr)
        return 2
    backend = build_backend(settings)
    if backend.pretrained is not None:
        backend.pretrained.wait()
    client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
    with tqdm(unit="task", desc=f"project {args.project}", smoothing=0.1) as bar:
        def progress(done: int, total: int) -> None:
            if bar.total is None:  # first call: tasks predicted by an earlier run are not this run's throughput
                bar.reset(total=total)
                bar.initial = bar.n = bar.last_print_n = done
                bar.refresh()
                return
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = push_predictions(backend, client, args.project, args.batch_size, args.page_size,
                                      args.import_size, progress)
        except KeyboardInterrupt:
            bar.close()
            print("stopped; the predictions made so far are stored: run the same command again to resume",
                  file=sys.stderr)
            return 130
        except LabelStudioError as exc:
            bar.close()
            print(f"error: {exc}; run the same command again to resume", file=sys.stderr)
            return 1
    print(f"project {args.project}, version {report.version}: {report.pushed} predictions stored, "
          f"{report.skipped} tasks already predicted, {len(report.failed)} failed, "
          f"{report.seconds:.1f} s ({report.per_second:.0f} tasks/s; Label Studio listing tasks "
          f"{report.list_seconds:.1f} s, importing predictions {report.import_seconds:.1f} s; "
          f"predicting {report.predict_seconds:.1f} s)")
    for failure in report.failed[:20]:
        print(f"  {failure}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train from a Label Studio JSON export; the model is saved as the project's current one."""
    backend = build_backend()
    annotations = annotations_from_tasks(_read_json(args.export))
    status = backend.train(args.project, annotations)
    print(json.dumps(status, indent=2))
    return 0 if status["state"] == "succeeded" else 1


def project_arg(value: str) -> str:
    """``--project`` as the store names it; a path or junk is refused before anything runs."""
    try:
        return project_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_versions(args: argparse.Namespace) -> int:
    """List a project's kept model versions, newest first; * marks the one serving."""
    found = build_backend().versions(args.project)
    for version in found["versions"]:
        print(f"{'*' if version == found['current'] else ' '} {version}")
    if not found["versions"]:
        print(f"project {args.project} has no kept versions yet (serving {found['current']})", file=sys.stderr)
    return 0


def cmd_use(args: argparse.Namespace) -> int:
    """Serve a kept version again (roll back); running servers switch at their next request."""
    backend = build_backend()
    try:
        backend.use_version(args.project, args.version)
    except UnknownVersion as exc:
        print(f"error: {exc}; list them with: python -m lsbackend versions --project {args.project}",
              file=sys.stderr)
        return 1
    print(f"project {args.project} now serves {args.version}")
    return 0


def cmd_settings(_args: argparse.Namespace) -> int:
    """Print every setting (variable, default, meaning): the table docs/settings.md shows."""
    print(Settings.table(), end="")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score kept versions on annotations none of them was trained on: per-label precision, recall, F1."""
    backend = build_backend()
    if backend.pretrained is not None:
        backend.pretrained.wait()
    try:
        report = evaluate(backend, args.project, args.version)
    except UnknownVersion as exc:
        print(f"error: {exc}; list them with: python -m lsbackend versions --project {args.project}",
              file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else evaluation_table(report))
    return 0


def cmd_train_curve(args: argparse.Namespace) -> int:
    """Train on 25, 50, 75 and 100 percent of the annotations, scoring each on the rest: does more labeling help?"""
    report = train_curve(build_backend(), args.project)
    print(json.dumps(report, indent=2) if args.json else curve_table(report))
    if args.plot:
        plot_curve(report, Path(args.plot))
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsbackend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("serve", cmd_serve), ("start", cmd_start)):
        p = sub.add_parser(name, help=(func.__doc__ or name).splitlines()[0])
        add_server_arguments(p)
        p.set_defaults(func=func)
    p = sub.add_parser("worker", help=cmd_worker.__doc__)
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("check", help=cmd_check.__doc__)
    p.add_argument("config", nargs="?", help="labeling config XML (default: LABEL_CONFIG or label_config.xml)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("predict", help=cmd_predict.__doc__)
    p.add_argument("tasks", nargs="?", help="tasks JSON file, or - for stdin (not with --push)")
    p.add_argument("-o", "--output")
    p.add_argument("--project", default="default", type=project_arg)
    p.add_argument("--push", action="store_true",
                   help="predict the project's tasks in Label Studio and store the predictions there")
    p.add_argument("--batch-size", type=int, default=100, help="tasks per prediction batch (with --push)")
    p.add_argument("--page-size", type=int, default=500, help="tasks fetched per API call (with --push)")
    p.add_argument("--import-size", type=int, default=2000,
                   help="predictions stored per API call (with --push); Label Studio recounts the whole "
                        "project on every call, so fewer, larger calls are faster")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("train", help=cmd_train.__doc__)
    p.add_argument("export", help="Label Studio JSON export, or - for stdin")
    p.add_argument("--project", default="default")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("versions", help=cmd_versions.__doc__)
    p.add_argument("--project", default="default", type=project_arg)
    p.set_defaults(func=cmd_versions)
    p = sub.add_parser("use", help=cmd_use.__doc__)
    p.add_argument("version", help="a kept version, as listed by the versions command")
    p.add_argument("--project", default="default", type=project_arg)
    p.set_defaults(func=cmd_use)
    sub.add_parser("settings", help=cmd_settings.__doc__).set_defaults(func=cmd_settings)
    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    p.add_argument("--project", default="default", type=project_arg)
    p.add_argument("--version", action="append", help="a kept version (repeat for several; default: all)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("train-curve", help=cmd_train_curve.__doc__)
    p.add_argument("--project", default="default", type=project_arg)
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--plot", metavar="PNG", help="also draw the curve into this PNG (needs matplotlib)")
    p.set_defaults(func=cmd_train_curve)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (TaskDataError, ConfigError) as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 1
    except (EvaluationError, LabelStudioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (*STARTUP_ERRORS, QueueUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
