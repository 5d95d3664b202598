"""Release-style checkpoints built from tests/data/param_manifest.tsv (names, shapes, trainability)."""

import mindspore as ms
import numpy as np


def manifest_checkpoint_params(manifest_rows, seed=0, with_optimizer_state=True):
    """A release-style parameter list from (name, shape, requires_grad) rows: random weights,
    BN statistics in a sane range, and optionally the optimizer entries of a training checkpoint.
    Used by the tests and the local hub test server (the published file is not downloaded in tests)."""
    rng = np.random.default_rng(seed)
    params = []
    for name, shape, trainable in manifest_rows:
        if name.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("gamma",)):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "moving_mean")):
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, 0.02, shape)
        params.append({"name": name, "data": ms.Tensor(value.astype(np.float32))})
    if with_optimizer_state:
        for name, shape, trainable in manifest_rows:
            if trainable:
                params.append({"name": f"moments.{name}", "data": ms.Tensor(np.zeros(shape, np.float32))})
        params += [
            {"name": "learning_rate", "data": ms.Tensor(np.array(0.1, np.float32))},
            {"name": "momentum", "data": ms.Tensor(np.array(0.9, np.float32))},
            {"name": "global_step", "data": ms.Tensor(np.array([1000], np.int32))},
        ]
    return params


def read_manifest(path):
    """Rows (name, shape tuple, requires_grad bool) of a param_manifest.tsv file."""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["name", "shape"]:
            raise ValueError(f"{path}: expected a 'name<TAB>shape<TAB>requires_grad' header")
        for line in f:
            if not line.strip():
                continue
            name, shape, grad = line.rstrip("\n").split("\t")
            dims = tuple(int(d) for d in shape.strip("[]").split(",") if d.strip())
            rows.append((name, dims, grad.strip() == "True"))
    return rows
