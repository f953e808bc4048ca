"""Reading a /predict body without walking it twice.

The general path parses the whole body and then walks every container to hold it to
``MAX_JSON_DEPTH``; on a 1000-task body from Label Studio (about 20 fields per task) that walk
cost more than the parse. ``read_predict_body`` lets msgspec split the body into its tasks and
fields as raw JSON and bounds each part's depth by counting its brackets, then parses the body with
the parser the general path uses, so every task is a plain, complete dict: a model may read any
field, copy it, or hand it to orjson or json and get all of it.

A body the typed reading does not take as it is (a wrong type, a missing field, NaN, a lone
surrogate, a number orjson refuses, possible deep nesting) gives ``None``; the server then parses
it the general way, so every error and its wording stay those of a full parse.
"""

from __future__ import annotations

import msgspec
import orjson


class _Raws(msgspec.Struct):
    tasks: list[msgspec.Raw]
    # None: absent from the body (JSON null arrives as the Raw text "null"). Typed ``Raw | None``, msgspec
    # would decode a JSON null as None too, so the annotation stays ``Raw`` and the None default is ignored.
    project: msgspec.Raw = None  # type: ignore[assignment]
    label_config: msgspec.Raw = None  # type: ignore[assignment]
    params: msgspec.Raw = None  # type: ignore[assignment]


_RAWS = msgspec.json.Decoder(_Raws)


def _surely_within(raw: msgspec.Raw, depth: int, limit: int) -> bool:
    """Whether a value found at ``depth`` nests no deeper than ``limit`` in all, without parsing it.

    Each level needs an opening bracket, so ``depth - 1`` plus the number of brackets bounds it (brackets
    inside strings only make the bound looser); a value that may be deeper goes to the general path.
    """
    text = bytes(raw)
    return depth - 1 + text.count(b"{") + text.count(b"[") <= limit


def read_predict_body(body: bytes, max_depth: int) -> tuple[dict, list[dict]] | None:
    """The body's ``project``/``label_config``/``params`` and its tasks, or ``None`` for the general path.

    ``None`` also for an empty task list, a task that is not an object with a ``data`` object, or a
    body that may nest deeper than ``max_depth``: the general path words those errors. The parse is
    orjson's, as on the general path; what orjson refuses goes the general way.
    """
    try:
        raws = _RAWS.decode(body)
    except (msgspec.DecodeError, RecursionError):  # msgspec.ValidationError is a DecodeError
        return None
    present = {name: raw for name in ("project", "label_config", "params")
               if (raw := getattr(raws, name)) is not None}
    if (not raws.tasks or not all(_surely_within(raw, 3, max_depth) for raw in raws.tasks)
            or not all(_surely_within(raw, 2, max_depth) for raw in present.values())):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    tasks = parsed.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        return None  # (a key given twice, which msgspec and orjson may each read differently)
    return {name: parsed[name] for name in present if name in parsed}, tasks
