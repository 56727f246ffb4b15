"""Which value of an axis the main tables and figures show, and in what order values come: one rule each, read by
the plan (which runs a figure needs) and by the analysis (which rows it shows). Pure Python, light to import."""

from __future__ import annotations

import math
from collections.abc import Iterable


def main_train_format(formats: Iterable[str | None]) -> str | None:
    """The plain fine-tuning format the main figures show: `default` if run, else the first other plain one."""
    plain = [f for f in formats if f is not None and f != "fticl"]
    if "default" in plain:
        return "default"
    return plain[0] if plain else None


def size_order(size: str | int | None) -> float:
    """Train sizes in increasing order, `all` (the whole train split) last."""
    if size is None or str(size) == "all":
        return math.inf
    return float(size)


def main_train_size(sizes: Iterable[str | int | None]) -> str | None:
    """The train size the main figures show: the largest one (`all` if run)."""
    present = [str(s) for s in sizes if s is not None]
    return max(present, key=size_order) if present else None


def main_eval_format(formats: Iterable[str]) -> str | None:
    """The eval format the curves, matrices, findings and figures read: `default` if present, else the first in
    sorted order. It depends on the set of formats alone, so the plan (from the config) and the analysis (from the
    formats a results table holds, in no particular order) pick the same one."""
    formats = set(formats)
    if "default" in formats:
        return "default"
    return min(formats) if formats else None


def main_variant(variants: Iterable[str | None]) -> str | None:
    """The fine-tuning variant the paper's figures show: `full` (full-parameter, the paper's) if run, else the first
    in sorted order; None for a table that records no variant."""
    named = {v for v in variants if v is not None}
    if "full" in named:
        return "full"
    return min(named) if named else None
