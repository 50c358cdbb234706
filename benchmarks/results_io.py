"""The results files of the benchmarks (benchmarks/results/*.json): the previous run to compare against, and
writing the new one."""

from __future__ import annotations

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def default_path(name: str) -> str:
    """benchmarks/results/<name>.json."""
    return os.path.join(RESULTS, f"{name}.json")


def previous(path: str) -> dict:
    """The previous run's results ({} if there is none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write(path: str, data: dict) -> None:
    """Write this run's results and say where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    print(f"written {path}")
