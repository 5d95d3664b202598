"""Test-time augmentation (--tta_flip, --tta_scales) as a runtime: images -> boxes, scores.

Each view (the plain input, its mirror, the input resized by each extra scale, and the mirror of
each) runs the network; boxes are normalised (y1, x1, y2, x2) of the input, so a mirrored view's
boxes are mirrored back (x -> 1 - x) and every view's rows are simply concatenated. The usual
post-processing (per-class NMS) then runs over the union: that is the merge, and the outputs keep
the plain runtime's shapes except for the longer anchor axis.

Extra scales need the network itself (a checkpoint or --hub): the detector is fully
convolutional but its box decoder holds the anchors of one input size, so each scale gets a
decoder for its own size around the same detector. An exported model has one input size.
"""

import numpy as np

from nasfpn.core.errors import UserError


def mirror_boxes(boxes):
    """Normalised (y1, x1, y2, x2) boxes (..., 4) of a mirrored image -> those of the original."""
    mirrored = np.array(boxes, copy=True)
    mirrored[..., 1] = 1 - boxes[..., 3]
    mirrored[..., 3] = 1 - boxes[..., 1]
    return mirrored


def scaled_shape(img_shape, scale, largest_step):
    """img_shape x scale, each side rounded to the nearest multiple of the largest step (at least
    one step), so every pyramid level has whole cells."""
    return tuple(
        max(largest_step, int(round(side * scale / largest_step)) * largest_step) for side in img_shape
    )


def resize_batch(images, shape):
    """[N, 3, H, W] network inputs resized (bilinear) to [N, 3, *shape]. Normalisation is
    per-channel affine, so resizing the normalised input equals normalising the resized image
    up to the interpolation's rounding."""
    import cv2

    height, width = shape
    out = np.empty((len(images), images.shape[1], height, width), np.float32)
    for i, image in enumerate(images):
        hwc = np.ascontiguousarray(np.transpose(image, (1, 2, 0)))
        out[i] = np.transpose(cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR), (2, 0, 1))
    return out


class TtaRuntime:
    """The views of a runtime, concatenated along the anchor axis (module docstring)."""

    def __init__(self, runtime, flip, scaled_runtimes=()):
        self.runtime = runtime
        self.flip = bool(flip)
        self.scaled = list(scaled_runtimes)  # [(input shape, runtime)]
        self.name = f"{runtime.name}+tta"
        self.input_shape = runtime.input_shape
        self.path = getattr(runtime, "path", None)

    def views(self):
        return (1 + len(self.scaled)) * (2 if self.flip else 1)

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        outputs = []
        for shape, runtime in [(None, self.runtime)] + self.scaled:
            inputs = images if shape is None else resize_batch(images, shape)
            outputs.append(runtime(inputs))
            if self.flip:
                boxes, scores = runtime(np.ascontiguousarray(inputs[..., ::-1]))
                outputs.append((mirror_boxes(boxes), scores))
        return (
            np.concatenate([b for b, _ in outputs], axis=1),
            np.concatenate([s for _, s in outputs], axis=1),
        )


def with_test_time_augmentation(runtime, flip, scales, img_shape, anchors):
    """`runtime` itself when no TTA is asked for, else a TtaRuntime for --tta_flip (`flip`) and
    --tta_scales (`scales`, factors of `img_shape`; each scale gets the anchors of the anchors
    section on its input size)."""
    scales = [float(s) for s in scales]
    if not flip and not scales:
        return runtime
    if getattr(runtime, "detections", False):
        raise UserError(
            f"--tta_flip/--tta_scales: {runtime.path} is a detections graph (its NMS "
            "runs inside the model, per view); test-time augmentation merges the raw "
            "outputs of the views: give the raw export or the checkpoint"
        )
    if any(not 0 < s <= 4 for s in scales):
        raise UserError(f"--tta_scales: expected factors in (0, 4] of img_shape, got {scales}")
    scaled = []
    if scales:
        cell = getattr(runtime, "cell", None)
        if cell is None or not hasattr(cell, "network"):
            raise UserError(
                f"--tta_scales={scales}: needs the network (--checkpoint_path or --hub); "
                f"{getattr(runtime, 'path', 'the exported model')} has one input size "
                "(use --tta_flip alone with an exported model)"
            )
        scaled = [_scaled_runtime(cell, img_shape, anchors, s) for s in scales]
    return TtaRuntime(runtime, flip, scaled)


def _scaled_runtime(cell, img_shape, anchors, scale):
    from nasfpn.ops.boxes import Anchors
    from nasfpn.inference.runtimes import CellRuntime
    from nasfpn.model import RetinaNetInfer

    shape = scaled_shape(img_shape, scale, anchors.largest_step)
    boxes = Anchors(anchors.spec(shape)).cycxhw
    return shape, CellRuntime(RetinaNetInfer(cell.network, boxes, anchors.prior_scaling))
