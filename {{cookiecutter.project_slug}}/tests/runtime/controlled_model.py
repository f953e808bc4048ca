"""The repo's model with a fit that tests can steer and watch from outside its process.

Training runs in a child process, which shares no memory with the test, so
the model talks through files in a ``fit-control`` folder of ``MODEL_DIR``
(found through the settings the backend hands every model object):

- ``pids``: each fit appends its process id when it starts;
- ``nice``: the niceness of each thread of the last fit's process (the BLAS pools' too), one per line;
- ``fail``: while it exists, fit raises ``RuntimeError`` with its text;
- ``hold``: while it exists, fit waits (at most two minutes) before fitting;
- ``rotate``: while it exists, fit learns every label as the next one of the config (a deliberately
  worse model, for the promotion rule).
- ``started_from`` (``PretrainedStart`` only): what each fit started from, one line per fit.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lsbackend.service import load_model_class

Base = load_model_class("model")


def control_dir(model_dir: Path) -> Path:
    path = Path(model_dir) / "fit-control"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fit_pids(model_dir: Path) -> list[int]:
    """The process ids of the fits started so far, in order."""
    pids = control_dir(model_dir) / "pids"
    return [int(line) for line in pids.read_text().split()] if pids.exists() else []


def started_from(model_dir: Path) -> list[str]:
    """``<model_version> <what the pretrained file held>`` of each ``PretrainedStart`` fit so far, in order."""
    path = control_dir(model_dir) / "started_from"
    return path.read_text().splitlines() if path.exists() else []


def thread_niceness() -> list[int]:
    """The niceness of every thread of this process (Linux keeps one per thread)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended since the listing (a lease, a loader)
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found.append(int(fields[16]))  # field 19 of proc(5)'s stat; this list starts at field 3
    return found


class ControlledModel(Base):
    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        control = control_dir(self.settings.model_dir)
        with (control / "pids").open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        (control / "nice").write_text("".join(f"{n}\n" for n in thread_niceness()))
        if (control / "fail").exists():
            raise RuntimeError((control / "fail").read_text())
        deadline = time.monotonic() + 120
        while (control / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if (control / "rotate").exists():
            annotations = [self.rotated(a) for a in annotations]
        return super().fit(annotations, **kwargs)

    def rotated(self, annotation: dict) -> dict:
        """The annotation with each label of this model's control replaced by the next label of the config."""
        labels = self.labels
        shift = {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}
        result = []
        for item in annotation.get("result") or []:
            value = dict(item.get("value") or {})
            for key in ("choices", "labels", "rectanglelabels"):
                if item.get("from_name") == self.control.name and isinstance(value.get(key), list):
                    value[key] = [shift.get(self.label_of(v), v) for v in value[key]]
            result.append({**item, "value": value})
        return {**annotation, "result": result}


class PretrainedStart(ControlledModel):
    """Loads MODEL_URI slowly, like a large model, and notes what each fit started from.

    A fit that does not wait for MODEL_URI starts from ``untrained`` with nothing in it.
    """

    LOAD_SECONDS = 2.0

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        time.sleep(cls.LOAD_SECONDS)
        return {"pretrained_bytes": path.read_bytes().decode()}

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        with (control_dir(self.settings.model_dir) / "started_from").open("a") as fh:
            fh.write(f"{self.model_version} {self.train_output.get('pretrained_bytes')}\n")
        return super().fit(annotations, **kwargs)
