"""Peak memory of one backend process for the worst input each variant allows.

One command: ``python bench/peak_memory.py``. For each variant it bakes the
template, trains the baked model on its examples through the runtime
(``Backend.train``) and, in a fresh process, sends the worst allowed input
through ``Backend.predict`` (the code path a gunicorn worker runs), then reads
the process's peak resident memory (``ru_maxrss``) before and after:

- image_classification: 4 tasks, each a PNG at the pixel limit
  (``MEDIA_MAX_MEGAPIXELS``, 40 MP: 6324x6324 RGBA), as data URIs;
- ner: 10 tasks of ``MAX_TEXT_CHARS`` (100,000 characters) each;
- text_classification: 10 tasks of 1 MB of text each (no per-task limit; the
  request limit ``MAX_REQUEST_MB`` bounds the batch).

Prints a Markdown table (copied into docs/reliability.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent

CHILD = r'''
import base64, io, json, resource, struct, sys, zlib
sys.path[:0] = [".", "tests/runtime"]
from pathlib import Path
import examples
from lsbackend.app import build_backend
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.settings import Settings

kind = sys.argv[1]
settings = Settings(model_dir=Path(sys.argv[2]), label_config_path=Path(sys.argv[3]), media_allowed_hosts=())
backend = build_backend(settings)
pairs = examples.training_set()
anns = [normalize_annotation({"id": i, "result": r}, {"id": i, "data": d}) for i, (d, r) in enumerate(pairs)]
status = backend.train("1", anns)
assert status["state"] == "succeeded", status
key = next(iter(pairs[0][0]))

def png(side):
    def chunk(k, b):
        return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b))
    row = b"\0" + b"\x80" * (side * 4)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
    raw += chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(raw).decode()

if kind == "image_classification":
    side = int((settings.media_max_pixels) ** 0.5)
    tasks = [{"id": i, "data": {key: png(side)}} for i in range(4)]
elif kind == "ner":
    words = " ".join(d[key] for d, _ in pairs)
    text = (words * (settings.max_text_chars // len(words) + 1))[: settings.max_text_chars]
    tasks = [{"id": i, "data": {key: text}} for i in range(10)]
else:
    words = " ".join(d[key] for d, _ in pairs)
    text = (words * (1_000_000 // len(words) + 1))[:1_000_000]
    tasks = [{"id": i, "data": {key: text}} for i in range(10)]
config = backend.label_config("1")
backend.predict("1", config, [{"id": 0, "data": {key: examples.holdout()[0][0][key]}}])  # warm: model loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = backend.predict("1", config, tasks)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = [r.get("error") for r in results if r.get("error")]
print(json.dumps({"before_mib": before / 1024, "peak_mib": after / 1024, "tasks": len(tasks), "errors": errors[:2]}))
'''


def measure(kind: str, workdir: Path) -> dict:
    from cookiecutter.main import cookiecutter

    repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(workdir / kind),
                             extra_context={"model_type": kind}))
    shape = {"text_classification": "text", "image_classification": "image", "ner": "ner"}[kind]
    setup = json.loads((repo / "tests" / "runtime" / "protocol" / f"setup_{shape}.json").read_text())
    (workdir / f"{kind}.xml").write_text(setup["json"]["schema"])
    args = [sys.executable, "-c", CHILD, kind, str(workdir / f"{kind}-models"), str(workdir / f"{kind}.xml")]
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="peak-memory-") as tmp:
        for kind in sys.argv[1:] or ["text_classification", "image_classification", "ner"]:
            result = measure(kind, Path(tmp))
            added = result["peak_mib"] - result["before_mib"]
            rows.append(f"| {kind} | {result['tasks']} | {result['before_mib']:.0f} MiB | {result['peak_mib']:.0f} MiB "
                        f"| {added:.0f} MiB | {len(result['errors'])} |")
            print(rows[-1], flush=True)
    print("\n| variant | tasks | process before | peak | added | per-task errors |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
