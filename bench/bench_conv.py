"""Micro-benchmark: one 3x3 conv (256->256 channels, 80x80, batch 1) on CPU, graph mode, next to a
1x1 conv and a MatMul of the same FLOPs. MindSpore 2.9/2.10 run the 3x3 case ~300x slower than
2.8.0 (5.7 s against 0.019 s, measured when the pin was chosen); run this under a candidate
version before changing the pin.

    python bench/bench_conv.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import markdown_table, record, timeit  # noqa: E402


CONV3X3_FLOPS = 80 * 80 * 256 * 256 * 9 * 2


def conv3x3_gflops(repeat=10):
    """GFLOP/s of the 3x3 conv (256->256 channels, 80x80, batch 1) in MindSpore graph mode, best of
    `repeat`: the float32 rate the network's convolutions can reach here (bench_deploy.py's peak)."""
    import mindspore as ms
    import mindspore.nn as nn

    cell = nn.Conv2d(256, 256, 3, pad_mode="same", has_bias=False)
    x = ms.Tensor(np.random.rand(1, 256, 80, 80).astype(np.float32))
    best, _ = timeit(lambda: cell(x).asnumpy(), repeat=repeat, warmup=2)
    return CONV3X3_FLOPS / best / 1e9


def main(argv):
    import mindspore as ms
    import mindspore.nn as nn
    import mindspore.ops as ops

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

    class MatMul(nn.Cell):
        def construct(self, a, b):
            return ops.matmul(a, b)

    x = ms.Tensor(np.random.rand(1, 256, 80, 80).astype(np.float32))
    cases = [
        (
            "conv 3x3 256->256 @80x80",
            nn.Conv2d(256, 256, 3, pad_mode="same", has_bias=False),
            (x,),
            CONV3X3_FLOPS,
        ),
        (
            "conv 1x1 256->256 @80x80",
            nn.Conv2d(256, 256, 1, pad_mode="same", has_bias=False),
            (x,),
            80 * 80 * 256 * 256 * 2,
        ),
        (
            "matmul 6400x2304 @ 2304x256",
            MatMul(),
            (
                ms.Tensor(np.random.rand(6400, 2304).astype(np.float32)),
                ms.Tensor(np.random.rand(2304, 256).astype(np.float32)),
            ),
            6400 * 2304 * 256 * 2,
        ),
    ]
    rows = []
    for name, cell, inputs, flops in cases:
        best, median = timeit(lambda: cell(*inputs).asnumpy(), repeat=10, warmup=2)
        rows.append([name, f"{best * 1000:.1f}", f"{flops / best / 1e9:.0f}"])
    body = "3x3-conv regression check, batch 1, graph mode, best of 10\n\n" + markdown_table(
        ["op", "best ms", "GFLOP/s"], rows
    )
    record("3x3 convolution", body, __file__, argv)


if __name__ == "__main__":
    from bench.common import run_bench

    run_bench(main, __doc__)
