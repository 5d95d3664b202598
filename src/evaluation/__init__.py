"""Evaluation: post-processing (NMS) and COCO metrics."""
