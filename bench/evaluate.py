"""Measure each variant's model quality on seeded synthetic data: ``python bench/evaluate.py``.

Why it works this way: what users get is the baked repo, so every variant is
baked with cookiecutter into a temporary folder and its own ``model.py`` is
trained through its own ``fit`` and asked through its own ``predict``, exactly
as the runtime does. Variants are discovered from the template's ``_variants/``;
a variant needs a data generator ``bench/datasets/<variant>.py`` (``METRIC``,
``make(n_train, n_test, seed)``, ``score(predictions, truths)``) and is skipped,
with the reason printed, when it has none or does not bake. More scenarios of one
variant live in ``<variant>__<scenario>.py`` (e.g. ``text_classification__multilabel``,
baked with its multi-label ``LABEL_CONFIG``) and get their own rows. A generator whose
labels differ from the variant's default config sets ``LABEL_CONFIG``; the
variant is then baked with it as the ``label_config`` answer, as a user would.
A generator with ``ONNX_ROUTE = True`` (object detection) also gets the rows of the
variant's ``MODEL_URI`` route: a YOLO model exported to ONNX serving with its default score
threshold, and after ``fit`` learnt per-label thresholds from the same annotations. The network is
``--onnx PATH`` (your export; its class names must map to the generator's labels) or, by default,
a stand-in built with ``onnx.helper`` (``bench/yolo_standin.py``), which measures the route, not YOLO.

The learning curve trains on the first N annotations of one seeded pool for
each N, averages over seeds, prints a Markdown table and writes JSON to
``bench/results/``. When ``fit`` refuses a tiny training set (e.g. only one
label among 10 annotations), the untrained model's empty predictions are scored,
since that is what a user would get.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
VARIANTS = TEMPLATE / "{{cookiecutter.project_slug}}" / "_variants"
DATASETS = BENCH / "datasets"
DEFAULT_SIZES = (10, 25, 50, 100)


def discover(variants_dir: Path = VARIANTS, datasets_dir: Path = DATASETS) -> tuple[list[str], dict[str, str]]:
    """Scenarios that can be measured (each variant's, then its ``<variant>__<scenario>`` ones), and the
    skipped variants with the reason."""
    ready, skipped = [], {}
    for variant in sorted(p.name for p in variants_dir.iterdir() if (p / "model.py").is_file()):
        if (datasets_dir / f"{variant}.py").is_file():
            ready.append(variant)
        else:
            skipped[variant] = f"no data generator: add bench/datasets/{variant}.py (METRIC, make, score)"
        ready.extend(sorted(p.stem for p in datasets_dir.glob(f"{variant}__*.py")))
    return ready, skipped


def variant_of(scenario: str) -> str:
    """``text_classification__multilabel`` is measured on the ``text_classification`` variant."""
    return scenario.split("__", 1)[0]


def load_file(path: Path, name: str) -> ModuleType:
    """Import a file under a unique module name, so same-named files of two variants never collide."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def bake(variant: str, into: Path, label_config: str = "") -> Path | str:
    """Generate the repo for ``variant`` with cookiecutter: its folder, or why it did not bake."""
    from cookiecutter.exceptions import CookiecutterException
    from cookiecutter.main import cookiecutter

    try:
        return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(into),
                                 extra_context={"model_type": variant, "label_config": label_config}))
    except CookiecutterException as exc:  # e.g. the pre-gen hook refuses a model type not enabled yet
        return f"does not bake ({type(exc).__name__}: {exc}); run cookiecutter with model_type={variant} to see why"


def import_baked(repo: Path) -> tuple[type, ModuleType]:
    """The baked repo's model class and its ``label_studio_api`` module (for ``normalize_annotation``)."""
    for name in [m for m in sys.modules if m == "model" or m == "lsbackend" or m.startswith("lsbackend.")]:
        del sys.modules[name]  # the previous variant's copies
    sys.path.insert(0, str(repo))
    try:
        from lsbackend import label_studio_api
        from lsbackend.service import load_model_class

        return load_model_class("model"), label_studio_api
    finally:
        sys.path.remove(str(repo))


def run_once(model_class: type, api: ModuleType, config: str, train: list, test: list, dataset: ModuleType,
             start: dict | None = None) -> dict:
    """Train on ``train`` through the model's own ``fit`` and score its predictions on ``test``.

    ``start`` is the ``train_output`` training starts from (a ``MODEL_URI`` model's), as the runtime does."""
    annotations = [api.normalize_annotation({"id": i, "result": r}, {"id": i, "data": d})
                   for i, (d, r) in enumerate(train)]
    row = {}
    try:
        output = model_class(config, train_output=start).fit(annotations)
        model = model_class(config, train_output=output, model_version="bench")
    except ValueError as exc:
        model, row["fit_refused"] = model_class(config, train_output=start), str(exc)
    predictions = model.predict([{"id": i, "data": d} for i, (d, _) in enumerate(test)])
    row.update(dataset.score(predictions, [truth for _, truth in test]))
    return row


def load_dataset(variant: str) -> ModuleType:
    return load_file(DATASETS / f"{variant}.py", f"bench_dataset_{variant}")


def evaluate_variant(variant: str, repo: Path, sizes: list[int], seeds: int, test_size: int) -> dict:
    """The learning curve of one baked variant: metrics per training size, averaged over seeds."""
    dataset = load_dataset(variant)
    model_class, api = import_baked(repo)
    config = (repo / "label_config.xml").read_text(encoding="utf-8")
    runs = {size: [] for size in sizes}
    for seed in range(seeds):
        pool, test = dataset.make(max(sizes), test_size, seed)
        for size in sizes:
            runs[size].append(run_once(model_class, api, config, pool[:size], test, dataset))
    return {"metric": dataset.METRIC, "model": model_class.__name__, "test_size": test_size, "seeds": seeds,
            "curve": averaged(runs)}


def averaged(runs: dict[int, list[dict]]) -> list[dict]:
    """Per training size, each metric's mean over the seeds and how many fits refused."""
    curve = []
    for size, rows in runs.items():
        names = [k for k in rows[0] if k != "fit_refused"]
        point = {"annotations": size, **{k: statistics.fmean(r[k] for r in rows) for k in names}}
        point["fit_refused"] = sum("fit_refused" in r for r in rows)
        curve.append(point)
    return curve


def onnx_detector(choice: str, into: Path) -> Path | str:
    """The YOLO export whose route is measured: ``--onnx PATH``, else the bench's stand-in built into ``into``;
    or why there is none."""
    if choice == "none":
        return "left out with --onnx none"
    if choice:
        path = Path(choice).expanduser()
        return path if path.is_file() else f"--onnx {choice}: no such file (a YOLO model exported to ONNX)"
    try:
        return load_file(BENCH / "yolo_standin.py", "bench_yolo_standin").build(into / "yolo_standin.onnx")
    except ImportError as exc:
        return f"the ONNX route needs onnx and onnxruntime ({exc}): pip install -r requirements.txt"


def evaluate_onnx(variant: str, repo: Path, detector: Path, sizes: list[int], seeds: int, test_size: int) -> dict:
    """The ONNX route's rows: the YOLO export as ``MODEL_URI`` serves it before any training (its default
    score threshold), and after ``fit`` learnt per-label thresholds from the first N annotations."""
    dataset = load_dataset(variant)
    model_class, api = import_baked(repo)
    config = (repo / "label_config.xml").read_text(encoding="utf-8")
    pretrained = model_class.load_pretrained(detector)  # what the runtime does with MODEL_URI
    untrained: dict[int, list[dict]] = {size: [] for size in sizes}
    learned: dict[int, list[dict]] = {size: [] for size in sizes}
    for seed in range(seeds):
        pool, test = dataset.make(max(sizes), test_size, seed)
        tasks = [{"id": i, "data": d} for i, (d, _) in enumerate(test)]
        served = model_class(config, train_output=pretrained, model_version="pretrained").predict(tasks)
        before = dataset.score(served, [truth for _, truth in test])
        for size in sizes:
            untrained[size].append(before)  # no fit: the same predictions whatever the number of annotations
            learned[size].append(run_once(model_class, api, config, pool[:size], test, dataset, start=pretrained))
    about = {"metric": dataset.METRIC, "model": model_class.__name__, "test_size": test_size, "seeds": seeds,
             "detector": detector.name}
    return {f"{variant} ONNX, default threshold": {**about, "curve": averaged(untrained)},
            f"{variant} ONNX, learned thresholds": {**about, "curve": averaged(learned)}}


def onnx_rows(variant: str, repo: Path, args: argparse.Namespace, into: Path) -> dict | str:
    """The ONNX route's rows for ``variant``, or why there are none."""
    detector = onnx_detector(args.onnx, into)
    if isinstance(detector, str):
        return detector
    try:
        return evaluate_onnx(variant, repo, detector, args.sizes, args.seeds, args.test_size)
    except (RuntimeError, ValueError) as exc:  # no onnxruntime, or no YOLO export: the runtime says which
        return str(exc)


def markdown(results: dict, sizes: list[int]) -> str:
    """One row per variant and metric, one column per training size."""
    lines = ["| variant | metric | " + " | ".join(f"{n} annotations" for n in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for variant, result in results.items():
        metrics = [k for k in result["curve"][0] if k not in ("annotations", "fit_refused")]
        for metric in sorted(metrics, key=lambda m: m != result["metric"]):
            cells = [f"{point[metric]:.3f}" for point in result["curve"]]
            lines.append(f"| {variant} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated training sizes (annotations), default %(default)s")
    parser.add_argument("--variants", default="", help="comma-separated variants, default: all with a generator")
    parser.add_argument("--seeds", type=int, default=5, help="seeded repetitions to average, default %(default)s")
    parser.add_argument("--test-size", type=int, default=300, help="held-out tasks per seed, default %(default)s")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="folder for the JSON results")
    parser.add_argument("--onnx", default="", metavar="PATH",
                        help="a YOLO model exported to ONNX whose route (MODEL_URI) gets rows, with and without "
                             "learnt thresholds, for data generators with ONNX_ROUTE (object detection); default: "
                             "the bench's stand-in built with onnx.helper (bench/yolo_standin.py); 'none' skips them")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r} must be comma-separated whole numbers, e.g. 10,25,50,100")
    if not args.sizes or min(args.sizes) < 1 or args.seeds < 1 or args.test_size < 1:
        parser.error("--sizes, --seeds and --test-size must be positive")
    return args


def choose(requested: str) -> tuple[list[str], dict[str, str]]:
    """The variants to run (all ready ones, or the requested ones) and the skipped ones with reasons."""
    ready, skipped = discover()
    if not requested:
        return ready, skipped
    wanted = [v.strip() for v in requested.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in ready and v not in skipped]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; the template has: {', '.join(ready + list(skipped))}")
    return [v for v in wanted if v in ready], {v: r for v, r in skipped.items() if v in wanted}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants, skipped = choose(args.variants)
    results, started = {}, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ls-ml-bench-") as tmp:
        for variant in variants:
            label_config = getattr(load_dataset(variant), "LABEL_CONFIG", "")
            repo = bake(variant_of(variant), Path(tmp) / variant, label_config)
            if isinstance(repo, str):
                skipped[variant] = repo
                continue
            results[variant] = evaluate_variant(variant, repo, args.sizes, args.seeds, args.test_size)
            if getattr(load_dataset(variant), "ONNX_ROUTE", False):
                rows = onnx_rows(variant, repo, args, Path(tmp))
                if isinstance(rows, str):
                    skipped[f"{variant} ONNX"] = rows
                else:
                    results.update(rows)
    for variant, reason in skipped.items():
        print(f"skipped {variant}: {reason}")
    print(markdown(results, args.sizes) if results else "no variant measured")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"sizes": args.sizes, "seconds": round(time.monotonic() - started, 1), "results": results,
              "skipped": skipped}
    path = args.out / "evaluate.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path} ({report['seconds']} s)")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
