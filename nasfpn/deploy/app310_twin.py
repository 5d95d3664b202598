"""Python twin of the Ascend 310 application (ascend310_infer/src/main.cc).

Same inputs (a folder of images, a model, the network input size) and the same outputs, byte for
byte in layout:
  <out_dir>/result_Files/<stem>_0.bin    float32 [A, 4]  boxes (y1, x1, y2, x2) in [0, 1]
  <out_dir>/result_Files/<stem>_1.bin    float32 [A, C]  sigmoid class scores
  <out_dir>/time_Result/test_perform_static.txt   mean model time per image in ms
  <out_dir>/result_Files/skipped_images.txt   (the twin only) images not decodable, with the reason
The model runs through nasfpn.inference.runtimes.open_runtime: a .mindir with MindSpore (CPU/GPU) or an
.onnx with ONNX Runtime. Images are listed, named and preprocessed exactly as the C++ app does.
"""

import os
import time

import numpy as np

from nasfpn.core.atomic import write_bytes_atomic
from nasfpn.core.interrupts import deferred_signals, report_progress
from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.config.flat import ConfigError
from nasfpn.core.files import IMAGE_SUFFIXES, image_files_in
from nasfpn.model_files.description import config_for_model
from nasfpn.inference.open_model import open_model
from nasfpn.core.storage import check_free_space, check_output_dir, claim_output_dir, storage_errors

RESULT_DIR = "result_Files"
TIME_DIR = "time_Result"
TIME_FILE = "test_perform_static.txt"
SKIPPED_FILE = "skipped_images.txt"  # the twin's addition: "<file name>\t<reason>" per skipped image
TWIN_RESULT_FILES = ("*_0.bin", "*_1.bin", SKIPPED_FILE)  # what makes a folder another run's results


def list_image_files(folder):
    """Paths of the image files directly in `folder`, sorted by name (hidden files skipped).

    Raises UserFileNotFoundError for a missing folder, UserError for a folder without images or two
    images with the same stem (their .bin files would collide).
    """
    if not os.path.isdir(folder):
        raise UserFileNotFoundError(f"image folder not found: {folder}")
    paths = image_files_in(folder)
    if not paths:
        raise UserError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {folder}")
    stems = [image_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        clash = sorted({s for s in stems if stems.count(s) > 1})
        raise UserError(f"{folder}: several images share the stem(s) {clash}; their .bin files would collide")
    return paths


def image_stem(path):
    """'dir/000000397133.jpg' -> '000000397133' (what the C++ app's FileStem returns)."""
    return os.path.splitext(os.path.basename(path))[0]


def result_file_paths(result_dir, stem):
    """(boxes .bin, scores .bin) of one image."""
    return (os.path.join(result_dir, f"{stem}_0.bin"), os.path.join(result_dir, f"{stem}_1.bin"))


def format_time_line(mean_ms, count):
    """The one line the C++ app writes into time_Result/test_perform_static.txt."""
    return f"NN inference cost average time: {mean_ms:.3f} ms of infer_count {count}\n"


def twin_output_dirs(result_path):
    """(.bin folder, time folder): the .bin files in `result_path` (the app's ./result_Files by
    default), the time file's folder beside it, as the app lays them out in its directory."""
    return result_path, os.path.join(os.path.dirname(os.path.normpath(result_path)), TIME_DIR)


def run_app(runtime, image_dir, img_shape, result_dir=RESULT_DIR, time_dir=TIME_DIR, progress=True, log=None):
    """Run `runtime` (images [1,3,H,W] -> boxes, scores) over the images of `image_dir`.

    Writes the .bin files into `result_dir` and the time file into `time_dir`; returns a dict with
    the count of processed images, the mean model time (ms), the end-to-end wall time (s, decode +
    preprocess + model + write) and `skipped`: (file, reason) of each image that could not be
    decoded or is truncated (reported, no .bin files; the C++ app would stop there). If no image
    can be decoded, ImageDecodeError names the first one.
    """
    from nasfpn.data.image_files import read_image_file
    from nasfpn.data.transforms import ImageDecodeError, preprocess_image

    images = list_image_files(image_dir)
    os.makedirs(result_dir, exist_ok=True)
    os.makedirs(time_dir, exist_ok=True)
    model_seconds, count, skipped = 0.0, 0, []
    report_progress(
        lambda: (
            f"{count} of {len(images)} image(s) have both .bin files (complete) in {result_dir}; "
            f"{TIME_FILE} and {SKIPPED_FILE} were not written"
        )
    )
    start = time.perf_counter()
    for path in _progress(images, progress):
        try:
            _, image = read_image_file(path)
        except ImageDecodeError as exc:
            skipped.append((path, str(exc)))
            if log:
                log.warning("skipped %s", exc)
            continue
        batch = preprocess_image(image, tuple(img_shape))[None]
        tic = time.perf_counter()
        boxes, scores = runtime(batch)
        model_seconds += time.perf_counter() - tic
        _check_outputs(boxes, scores, path)
        if not count:  # the size per image is known now: room for all of them?
            check_free_space(
                result_dir, len(images) * (boxes[0].nbytes + scores[0].nbytes), f"--result_path={result_dir}"
            )
        with storage_errors(result_dir, "writing the results into"), deferred_signals():  # both files or none
            for file_path, array in zip(result_file_paths(result_dir, image_stem(path)), (boxes, scores)):
                write_bytes_atomic(file_path, np.ascontiguousarray(array[0], np.float32).tobytes())
        count += 1
    if not count:
        raise ImageDecodeError(
            f"none of the {len(images)} image(s) of {image_dir} could be decoded; first: {skipped[0][1]}"
        )
    wall_seconds = time.perf_counter() - start
    mean_ms = 1000.0 * model_seconds / count
    with storage_errors(result_dir, "writing the results into"):
        write_skipped_list(result_dir, skipped)
        write_bytes_atomic(os.path.join(time_dir, TIME_FILE), format_time_line(mean_ms, count).encode())
    return {
        "count": count,
        "mean_model_ms": mean_ms,
        "wall_seconds": wall_seconds,
        "result_dir": result_dir,
        "skipped": skipped,
    }


def write_skipped_list(result_dir, skipped):
    """result_Files/skipped_images.txt: the images that have no .bin files and why, so that
    postprocess.py leaves them out knowingly instead of failing on them. Without skips there is no
    such file (the C++ app's layout; a list left by an earlier run into the folder is removed)."""
    path = os.path.join(result_dir, SKIPPED_FILE)
    if not skipped:
        if os.path.isfile(path):
            os.remove(path)
        return
    lines = "".join(f"{os.path.basename(image)}\t{' '.join(reason.split())}\n" for image, reason in skipped)
    write_bytes_atomic(path, lines.encode())


def read_skipped_list(result_dir):
    """{file name: reason} from result_Files/skipped_images.txt ({} when absent: the C++ app)."""
    path = os.path.join(result_dir, SKIPPED_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    return {row[0]: (row[1] if len(row) > 1 else "") for row in rows}


def _check_outputs(boxes, scores, path):
    if (
        boxes.ndim != 3
        or boxes.shape[0] != 1
        or boxes.shape[2] != 4
        or scores.ndim != 3
        or scores.shape[:2] != boxes.shape[:2]
    ):
        raise UserError(
            f"{path}: the model returned boxes {boxes.shape} and scores {scores.shape}; "
            "expected [1, A, 4] and [1, A, C] (export with --export_batch_size=1)"
        )


def _progress(items, enabled):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="310 twin", unit="img")


def run_twin(cfg, log):
    """infer_310_twin.py: run_app with the config's exported model (fed one image at a time, as
    the app does) on the inference section's dataset_path; returns run_app's summary."""
    cfg.inference.check_model_choice(exported_only=True)
    if not cfg.inference.dataset_path:
        raise ConfigError("--dataset_path: expected a folder of images")
    cfg, _ = config_for_model(cfg, cfg.inference.model_file)  # an export of this project knows its img_shape
    result_dir, time_dir = twin_output_dirs(cfg.inference.result_path)
    check_output_dir(time_dir, what="time folder", create=False)
    # One writer per result folder (docs/troubleshooting.md), claimed before the model loads.
    with claim_output_dir(result_dir, "result_path", TWIN_RESULT_FILES, cfg.job.overwrite) as writing_dir:
        runtime, _ = open_model(
            cfg,
            log,
            exported_only=True,
            batch_size=1,
            raw_outputs_for="the 310 twin (it writes the raw outputs as .bin files)",
        )
        summary = run_app(
            runtime, cfg.inference.dataset_path, tuple(cfg.model.img_shape), writing_dir, time_dir, log=log
        )
        log_twin_summary(log, summary, cfg.inference.result_path)
    return {**summary, "result_dir": result_dir}


def log_twin_summary(log, summary, result_path):
    """What the twin did, in a line (and a warning naming the skipped images)."""
    log.info(
        "%d images -> %s; mean model time %.3f ms/img, end to end %.3f s/img",
        summary["count"],
        result_path,
        summary["mean_model_ms"],
        summary["wall_seconds"] / summary["count"],
    )
    if summary["skipped"]:
        log.warning(
            "%d images skipped (not decodable or truncated; no .bin files): %s",
            len(summary["skipped"]),
            ", ".join(os.path.basename(p) for p, _ in summary["skipped"]),
        )
