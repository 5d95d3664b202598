"""Model parts: backbone (resnet), neck (nas_fpn, merge_cells), head (retina_head), detector."""

from nasfpn.model.detector import (
    BoxDecoder,
    RetinaNetInfer,
    RetinaNetNasFpn,
    RetinaNetWithLoss,
    build_detector,
)

__all__ = ["BoxDecoder", "RetinaNetInfer", "RetinaNetNasFpn", "RetinaNetWithLoss", "build_detector"]
