"""faster-coco-eval's COCOeval_faster (what nasfpn/evaluation/coco_metrics.py runs) against
pycocotools' COCOeval on the project's cases: the twelve numbers to 1e-6 (both accumulate the
same float64 precision tables; 1e-6 is the adoption criterion, far above float64 rounding) and
the per-class arrays the analysis reads."""

import contextlib
import io

import numpy as np
import pytest

from bench.bench_coco_eval import synthetic_coco
from nasfpn.evaluation.coco_metrics import coco_evaluate, ground_truth_coco, run_cocoeval, summary_text
from tests.test_analysis import _case


def _both(coco, detections):
    from faster_coco_eval import COCOeval_faster
    from pycocotools.cocoeval import COCOeval

    ids = [i["id"] for i in coco["images"]]
    out = []
    for evaluator_class in (COCOeval_faster, COCOeval):
        evaluator = run_cocoeval(ground_truth_coco(coco), detections, ids, evaluator_class)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        out.append(evaluator)
    return out


@pytest.mark.parametrize("case", ["hand-built", "synthetic"])
def test_twelve_numbers_and_arrays_equal_pycocotools(case):
    coco, detections = _case() if case == "hand-built" else synthetic_coco(40, seed=3)
    fast, reference = _both(coco, detections)
    np.testing.assert_allclose(np.array(fast.stats[:12]), np.array(reference.stats), rtol=0, atol=1e-6)
    for key in ("precision", "recall"):
        np.testing.assert_allclose(fast.eval[key], reference.eval[key], rtol=0, atol=1e-6)


def test_summary_lines_have_pycocotools_format():
    from pycocotools.cocoeval import COCOeval

    coco, detections = synthetic_coco(10, seed=4)
    evaluator = run_cocoeval(ground_truth_coco(coco), detections, [i["id"] for i in coco["images"]], COCOeval)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.summarize()
    stats, text = coco_evaluate(coco, detections, [i["id"] for i in coco["images"]])
    assert text == "\n".join(printed.getvalue().splitlines())
    assert summary_text(stats) == text
