"""The debug trace as the X-EP-Trace header: JSON that stays whole within the bytes a header
may take. What the page got comes first; the rules and experiments follow in their order
for as long as they fit, and those left out are counted, never cut in the middle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

TRACE_LIMIT: Final = 6000   # bytes of the X-EP-Trace header; proxies reject much larger ones
# What the visitor got, always first: cut off, the rest would say nothing of it
_FIRST: Final = ("decision", "page", "as_is")
_LISTS: Final = ("rules", "experiments")
_WHOLE: Final = ("edge-personalizer explain --rules DIR --url URL --header ... shows the "
                 "whole trace")
# Room kept for `left_out` (its counts and _WHOLE) while the lists are filled
_LEFT_OUT_ROOM: Final = 200


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=str)


def trace_header(trace: Mapping[str, Any], limit: int = TRACE_LIMIT) -> bytes:
    """`trace` (rules/evaluator.py `explain`, with the page's `page`) as at most `limit`
    bytes of JSON. When it is larger, the first rules and experiments that fit are kept,
    and `left_out` says how many of each are not; when even the decision is larger, the
    header keeps what the page got and says where to read the trace whole."""
    first = {**{key: trace[key] for key in _FIRST if key in trace},
             **{key: value for key, value in trace.items()
                if key not in _FIRST and key not in _LISTS}}
    lists = {key: list(trace.get(key) or ()) for key in _LISTS}
    whole = _json({**first, **lists})
    if len(whole) <= limit:
        return whole.encode("ascii")
    size = len(_json({**first, **{key: [] for key in _LISTS}})) + _LEFT_OUT_ROOM
    kept: dict[str, list[Any]] = {key: [] for key in _LISTS}
    left_out: dict[str, Any] = {}
    for key, items in lists.items():
        for n, item in enumerate(items):
            more = len(_json(item)) + 1   # (and its comma)
            if size + more > limit:
                left_out[key] = len(items) - n
                break
            kept[key].append(item)
            size += more
    text = _json({**first, **kept, "left_out": {**left_out, "whole": _WHOLE}})
    if len(text) <= limit:
        return text.encode("ascii")
    told = {"left_out": {"bytes": len(whole), "whole": _WHOLE}}
    text = _json({"page": trace.get("page"), **told})
    return (text if len(text) <= limit else _json(told)).encode("ascii")
