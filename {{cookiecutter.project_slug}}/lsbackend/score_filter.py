"""The project's ``score_threshold`` applied to any model's answers, so a model need not apply it itself.

Label Studio's Connect dialog sets it per project (extra params); a result item scoring below it is left
out. Items without a score (scores are optional) are kept: there is nothing to compare.
"""

from __future__ import annotations


def leave_out_unsure(predictions: list[dict], threshold: float) -> list[dict]:
    """``predictions`` without the result items whose score is below ``threshold`` (0 keeps everything)."""
    if not threshold:
        return predictions
    for prediction in predictions:
        prediction["result"] = [item for item in prediction["result"] if not unsure(item, threshold)]
    return predictions


def unsure(item: object, threshold: float) -> bool:
    score = item.get("score") if isinstance(item, dict) else None
    return isinstance(score, int | float) and not isinstance(score, bool) and score < threshold
