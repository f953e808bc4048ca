"""``evaluate`` and ``train-curve``: how good each kept version is, and whether more labeling still helps.

Both read a project's annotations through the backend (recorded from webhooks, plus Label
Studio's with ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``) and score with
``scoring.py``, on tasks the scored model was not trained on:

- ``evaluate`` scores kept versions on the held-out slice. Each training records
  the share it held out (``EVAL_HOLDOUT``); versions are scored together on the
  tasks none of them was trained on (the smallest recorded share). A version
  trained on everything (fewer than ``EVAL_MIN_ANNOTATIONS`` then, or
  ``EVAL_HOLDOUT=0``) is not scored: its score would be its training score.
  A pretrained model (``MODEL_URI``) was trained on none of the project's tasks.
- ``train-curve`` trains fresh models on 25/50/75/100% of the other tasks and
  scores each on the held-out slice.
"""

from __future__ import annotations

import time
from pathlib import Path

from .base import INITIAL_VERSION
from .evaluation import held_out_position, split, stamp, usable
from .scoring import EvaluationError, score_model
from .service import Backend
from .storage import UnknownVersion

CURVE_STEPS = (0.25, 0.5, 0.75, 1.0)
#: A change of F1 smaller than this between the last two steps of the curve counts as flat.
FLAT = 0.01


def _annotations(backend: Backend, project: str) -> list[dict]:
    found = usable(backend.collect_annotations(project))
    if not found:
        raise EvaluationError(f"project {project} has no annotations to score against: annotate some tasks "
                              "(the webhook records them), or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to "
                              "read them from Label Studio")
    return found


def evaluate(backend: Backend, project: str, versions: list[str] | None = None) -> dict:
    """Score kept versions (default: all) on the held-out slice; record each one's scores; the report."""
    store = backend.store(project)
    listed = backend.versions(project)
    asked = list(dict.fromkeys(versions or listed["versions"]))
    for version in asked:
        if version not in listed["versions"]:
            kept = ", ".join(listed["versions"]) or "none yet"
            raise UnknownVersion(f"version {version!r} is not kept for project {project} (kept: {kept})")
    annotations = _annotations(backend, project)
    records = store.evaluations()
    pretrained = backend.pretrained.version if backend.pretrained is not None else None
    shares = {v: 1.0 if v == pretrained else float((records.get(v) or {}).get("held_out") or 0.0) for v in asked}
    common = min((s for s in shares.values() if s > 0), default=0.0)
    held_out = [a for a in annotations if held_out_position(a) < common]
    config = backend.label_config(project)
    scored = []
    for version in asked:
        if shares[version] == 0:
            scored.append({"version": version, "not_scored": "trained on every annotation (nothing held out), "
                           "so its score would be its training score; see train-curve for the model's recipe"})
            continue
        if not held_out:
            scored.append({"version": version, "not_scored": f"none of the {len(annotations)} annotations is "
                           f"on a held-out task yet (share {common:g})"})
            continue
        try:
            output = (backend.pretrained.get()[1] if backend.pretrained is not None and version == pretrained
                      else store.load_version(version))
        except UnknownVersion as exc:  # its file broke since: the others are still scored
            scored.append({"version": version, "not_scored": str(exc)})
            continue
        report = stamp(score_model(backend.build_model(project, config, output, version), held_out), len(held_out))
        scored.append({"version": version, **report})
        if version in records:
            records[version]["evaluation"] = report
    store.save_evaluations(records)
    return {"project": project, "annotations": len(annotations), "held_out": len(held_out),
            "held_out_share": common, "current": listed["current"], "versions": scored}


def train_curve(backend: Backend, project: str, steps: tuple[float, ...] = CURVE_STEPS) -> dict:
    """Fresh models trained on growing shares of the annotations, each scored on the held-out slice."""
    annotations = _annotations(backend, project)
    share = backend.settings.eval_holdout or 0.2
    train_on, held_out = split(annotations, share)
    if not held_out or len(train_on) < 2:
        raise EvaluationError(f"project {project} has {len(annotations)} annotations: too few to hold "
                              f"{share:.0%} of the tasks out and train on the rest; annotate more")
    train_on.sort(key=lambda a: held_out_position(a, salt="curve"))  # a fixed shuffle: any prefix is a sample
    config = backend.label_config(project)
    points = []
    for step in steps:
        subset = train_on[: max(1, round(len(train_on) * step))]
        point = {"share": step, "annotations": len(subset)}
        model = backend.build_model(project, config, {}, INITIAL_VERSION)
        try:
            output = model.fit(subset)
        except Exception as exc:  # too few labels at 25% is an answer too
            points.append({**point, "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        trained = backend.build_model(project, config, output, f"curve-{step:.0%}")
        points.append({**point, **score_model(trained, held_out)})
    return {"project": project, "held_out": len(held_out), "points": points, "advice": advice(points)}


def advice(points: list[dict]) -> str:
    """One plain sentence on whether more labeling still helps, from the last two steps of the curve."""
    scored = [p for p in points if "score" in p]
    if len(scored) < 2:
        return "Too few steps could be trained to tell; annotate more (with every label) and run it again."
    before, last = scored[-2], scored[-1]
    gain = last["score"] - before["score"]
    figures = (f"from {before['annotations']} to {last['annotations']} annotations {last['metric']} went "
               f"{before['score']:.3f} -> {last['score']:.3f}")
    if gain >= FLAT:
        return f"Still improving ({figures}): labeling more is likely to help."
    if gain > -FLAT:
        return (f"Flat ({figures}): more annotations like these are unlikely to help much; label harder or rarer "
                "cases, or improve the model.")
    return (f"Worse with more data ({figures}): check the newest annotations for disagreements, or annotate more "
            "so the held-out slice is large enough to tell.")


# --- terminal output ----------------------------------------------------------------
def _figure(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _per_label(report: dict) -> list[str]:
    lines = [f"  {'label':<16} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for label, row in report["per_label"].items():
        lines.append(f"  {label[:16]:<16} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} "
                     f"{row['support']:>8}")
    return lines


def evaluation_table(report: dict) -> str:
    """The ``evaluate`` report as a terminal table; * marks the version serving."""
    lines = [f"project {report['project']}: {report['annotations']} annotations, scored on the {report['held_out']} "
             f"held out of training (tasks none of these versions was trained on)", "",
             f"  {'version':<28} {'f1':>6} {'accuracy':>9} {'calibration':>12} {'examples':>9}"]
    for row in report["versions"]:
        mark = "*" if row["version"] == report["current"] else " "
        if "not_scored" in row:
            lines.append(f"{mark} {row['version']:<28} not scored: {row['not_scored']}")
            continue
        lines.append(f"{mark} {row['version']:<28} {row['score']:>6.3f} {_figure(row.get('accuracy')):>9} "
                     f"{_figure(row.get('calibration_error')):>12} {row['examples']:>9}")
    for row in report["versions"]:
        if "per_label" in row:
            lines += ["", f"{row['version']}:", *_per_label(row)]
    return "\n".join(lines)


def curve_table(report: dict) -> str:
    """The ``train-curve`` report as a terminal table and its advice."""
    lines = [f"project {report['project']}: scored on {report['held_out']} held-out annotations", "",
             f"  {'share':>5} {'annotations':>11} {'f1':>6}  {'change':>6}"]
    previous = None
    for point in report["points"]:
        if "score" not in point:
            lines.append(f"  {point['share']:>5.0%} {point['annotations']:>11}  not trained: {point['error']}")
            continue
        change = f"{point['score'] - previous:+.3f}" if previous is not None else ""
        lines.append(f"  {point['share']:>5.0%} {point['annotations']:>11} {point['score']:>6.3f}  {change:>6}")
        previous = point["score"]
    return "\n".join([*lines, "", report["advice"]])


def plot_curve(report: dict, path: Path) -> None:
    """The curve as a PNG; needs matplotlib, which the default install leaves out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ModuleNotFoundError:
        raise EvaluationError("--plot needs matplotlib, which the default install leaves out: "
                              "pip install matplotlib (or drop --plot for the table)") from None
    scored = [p for p in report["points"] if "score" in p]
    figure, axes = pyplot.subplots(figsize=(5, 3.5))
    axes.plot([p["annotations"] for p in scored], [p["score"] for p in scored], marker="o")
    axes.set(xlabel="annotations trained on", ylabel=scored[0]["metric"] if scored else "score", ylim=(0, 1.02),
             title=f"project {report['project']}: {time.strftime('%Y-%m-%d')}")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
