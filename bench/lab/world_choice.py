"""A knob's value chosen on some kinds of world and judged on a kind it never saw (leave one world out).

Why: a value chosen and judged on the same worlds (or on two rooms) says how well it fits them, not how it
travels. For each world kind W in turn the value with the best mean score over the other kinds is chosen, never
looking at W or at any kind that shares W's scenes (`group_of`: a room's scenes downscaled or blurred are the same
people on the same paths, so they would tell the choice about W), and its score on W is set beside the shipped
default's there. The spread across worlds (mean, min, max) goes with every table, not the mean alone.
"""
from __future__ import annotations

from typing import Callable, Hashable


def spread(values: list[float]) -> dict[str, float]:
    """mean, min and max of one measure over the world kinds."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def leave_one_world_out(scores: dict[Hashable, dict[str, float]], default: Hashable,
                        group_of: Callable[[str], str] = lambda kind: kind) -> dict[str, dict]:
    """scores: knob value -> world kind -> score (higher is better; every value scored on the same kinds).
    For each kind W: the value with the best mean over the kinds whose group differs from W's (ties: the value
    listed first), its score on W and the default's. Kinds with no other group to choose on are left out."""
    kinds = list(next(iter(scores.values())))
    out = {}
    for left in kinds:
        seen = [k for k in kinds if group_of(k) != group_of(left)]
        if not seen:
            continue
        means = {v: sum(scores[v][k] for k in seen) / len(seen) for v in scores}
        chosen = max(means, key=lambda v: means[v])    # the first of equal means: max keeps the first
        out[left] = {"chosen": chosen, "chosen_on": seen, "mean_on_chosen": means[chosen],
                     "score": scores[chosen][left], "default_score": scores[default][left],
                     "gain": scores[chosen][left] - scores[default][left]}
    return out
