"""Evaluation: COCO metrics of a runtime over an eval MindRecord set, also during training."""
