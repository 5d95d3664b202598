"""Comparing the state of two short trainings that compute the same mathematics in a different float32
order (recompute, gradient accumulation): what can be exact, and a norm bound for the rest.

Elementwise rtol is meaningless for gradients, momenta and BatchNorm means: many elements cancel to
near zero and keep only rounding noise. Each tensor is instead compared by how far it moved from
the shared initial state, relative to the largest element of that move:

    max|got - ref| <= c * max(max|ref - init|, FLOOR * largest move of its kind)
                      + steps * ulp(max|ref|)

The FLOOR: a value that cancels (a gradient through NAS-FPN's P7 BatchNorm, which normalises two
samples per channel at 128 px and batch 2; the batch mean of a 1x1 conv of zero-mean BatchNorm
outputs) is the rounding noise of the terms it sums, and those are of the size of the other
tensors of its kind, not of its own; measured such values sit 1e-6..1e-7 below their kind's
largest. 1e-3 of the largest then bounds their noise by c * 1e-3 * largest, far above u * largest.

The ulp term: each step stores the updated value rounded to float32, so two runs whose updates
differ by less than an ulp can still differ by one ulp of the value per step (a weight of 0.04
whose gradient is 1e-8 moves by 1e-12 but rounds to a neighbour 4e-9 away).
"""

import numpy as np

FLOOR = 1e-3
# Copied constants and counters: no arithmetic that could round differently.
EXACT = ("global_step", "learning_rate", "momentum", "scale_sense")


def state_of(cell):
    """name -> a copy of each parameter (asnumpy() of a CPU parameter can share its memory, so
    a kept result would follow later training steps)."""
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _kind(name):
    if name.startswith("moments."):
        return "moments"
    if name.endswith((".moving_mean", ".moving_variance")):
        return name.rsplit(".", 1)[1]
    return "weights"


def assert_states_match(got, ref, init, c, steps):
    """`got` and `ref` (name -> array after `steps` training steps) from the same `init`, within c
    (see module)."""
    assert sorted(got) == sorted(ref)
    moves = {name: ref[name].astype(np.float64) - init.get(name, 0) for name in ref if name not in EXACT}
    largest = {}
    for name, move in moves.items():
        largest[_kind(name)] = max(largest.get(_kind(name), 0.0), float(np.abs(move).max()))
    for name in EXACT:
        if name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    for name, move in moves.items():
        scale = max(float(np.abs(move).max()), FLOOR * largest[_kind(name)])
        stored = steps * float(np.spacing(np.abs(ref[name]).max().astype(np.float32)))
        error = float(np.abs(got[name].astype(np.float64) - ref[name]).max())
        assert error <= c * scale + stored, (
            f"{name}: max |got - ref| = {error:.3g} > {c} x {scale:.3g} + {stored:.3g}"
        )
