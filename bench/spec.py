"""What the benchmark subprocesses share: run with a JSON spec in, a JSON result out."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def serve_spec(run: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]) -> None:
    """python -m bench.<module> SPEC.json RESULT.json: run(spec) on uvloop, write its result."""
    import uvloop

    with open(sys.argv[1]) as spec_file:
        spec = json.load(spec_file)
    result = uvloop.run(run(spec))
    with open(sys.argv[2], "w") as out:
        json.dump(result, out)
