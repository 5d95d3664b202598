"""ModelArts training jobs (Huawei Cloud): the release's `enable_modelarts` flow, in one place for
every entry point.

    if __name__ == "__main__":
        run_entry_point(modelarts_entry(run))   # run(cfg): the entry point's work

With --enable_modelarts=True (nothing happens otherwise):
1. before the run, on the first device of each server only, copy data_url -> data_path,
   checkpoint_url -> load_path and train_url -> output_path with the ModelArts SDK (`moxing`,
   which exists only on ModelArts), then unzip data_path/<modelarts_dataset_unzip_name>.zip into
   data_path when need_modelarts_dataset_unzip is set and it is not extracted yet; the other
   devices of the server wait for that device's "done" file;
2. relative paths of the run are rooted where the job's files are: inputs (mindrecord_dir,
   coco_root, ...) under data_path, outputs (save_checkpoint_path, eval_output_dir, ...) under
   output_path, checkpoints (checkpoint_path, pre_trained, model_path, backbone_pretrained) under load_path;
3. after the run, also when it failed, the first device of each server copies output_path ->
   train_url.
Device ids and counts come from the environment ModelArts sets (DEVICE_ID, RANK_SIZE, JOB_ID);
the "done" files live in the temporary folder of the job's container, fresh for each job.
"""

import contextlib
import functools
import logging
import os
import shutil
import tempfile
import time
import zipfile

from nasfpn.config.flat import load_config
from nasfpn.core.errors import RunError, UserError

DEVICES_PER_SERVER = 8  # Ascend servers of ModelArts hold 8 devices
WAIT_POLL_SECONDS = 1.0
WAIT_TIMEOUT_SECONDS = 3 * 3600  # copying COCO from OBS takes minutes; give up only when clearly stuck

# Which folder a relative path of each kind is rooted in on ModelArts.
INPUT_KEYS = (
    "mindrecord_dir",
    "coco_root",
    "image_dir",
    "train_image_dir",
    "val_image_dir",
    "anno_path",
    "dataset_path",
    "image",
)
OUTPUT_KEYS = ("save_checkpoint_path", "eval_output_dir", "output_dir", "file_name", "result_path")
CHECKPOINT_KEYS = ("checkpoint_path", "pre_trained", "model_path", "backbone_pretrained")

log = logging.getLogger("nasfpn")


class ModelArtsError(UserError):
    """enable_modelarts=True where the flow cannot run (no SDK, a missing zip)."""


def import_moxing():
    """The ModelArts SDK, or ModelArtsError: it is installed only on ModelArts machines."""
    try:
        import moxing
    except ImportError:
        raise ModelArtsError(
            "--enable_modelarts=True needs the ModelArts SDK (python module "
            "'moxing'), which exists only on ModelArts; run without "
            "--enable_modelarts off ModelArts"
        ) from None
    return moxing


def device_id_from_env():
    return int(os.environ.get("DEVICE_ID", "0"))


def device_num_from_env():
    return int(os.environ.get("RANK_SIZE", "1"))


def is_server_writer(device_id, device_num):
    """The first device of each server does the copying and unzipping (the release's rule)."""
    return device_id % min(device_num, DEVICES_PER_SERVER) == 0


def sync_dir():
    """Folder of the "done" files, shared by the processes of one job on one server."""
    job = os.environ.get("JOB_ID") or "default"
    return os.path.join(tempfile.gettempdir(), f"nasfpn-modelarts-{job}")


def done_file(step):
    return os.path.join(sync_dir(), f"{step}.done")


def mark_done(step):
    os.makedirs(sync_dir(), exist_ok=True)
    path = done_file(step)
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)  # the waiters never see a half-written marker


def wait_done(step, timeout=WAIT_TIMEOUT_SECONDS, poll=WAIT_POLL_SECONDS):
    path = done_file(step)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RunError(
                f"ModelArts: waited {timeout:.0f} s for the first device of this server "
                f"to finish '{step}' ({path} never appeared)"
            )
        time.sleep(poll)


def copy_url(mox, src, dst):
    """OBS <-> local copy with the SDK: a folder recursively, a single file as a file."""
    if mox.file.is_directory(src):
        mox.file.copy_parallel(src, dst)
    else:
        os.makedirs(dst, exist_ok=True)
        mox.file.copy(src, os.path.join(dst, os.path.basename(src.rstrip("/"))))
    log.info("ModelArts: copied %s -> %s", src, dst)


def unzip_dataset(data_path, name):
    """Extract data_path/<name>.zip to data_path/<name> unless that folder exists. Extracted under a
    temporary name and renamed, so a killed job never leaves a half-extracted folder behind."""
    target = os.path.join(data_path, name)
    if os.path.isdir(target):
        log.info("ModelArts: %s already extracted", target)
        return target
    archive = target + ".zip"
    if not os.path.isfile(archive):
        raise ModelArtsError(
            f"--need_modelarts_dataset_unzip=True but {archive} does not exist (the "
            f"--modelarts_dataset_unzip_name is {name!r}); give the zip's name, or "
            "--need_modelarts_dataset_unzip=False when data_url holds the files"
        )
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=data_path)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        entries = os.listdir(staging)
        # A zip of the folder itself holds <name>/...; a zip of its contents holds the files.
        inner = os.path.join(staging, name)
        os.replace(inner if entries == [name] and os.path.isdir(inner) else staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("ModelArts: extracted %s -> %s", archive, target)
    return target


def prepare_inputs(job, mox, writer):
    """Step 1 of the flow (module docstring) for this process, with the job section's locations."""
    if writer:
        for src, dst in ((job.data_url, job.data_path), (job.checkpoint_url, job.load_path)):
            if src:
                copy_url(mox, src, dst)
        if job.train_url and mox.file.exists(job.train_url):  # an earlier run's outputs (resume)
            copy_url(mox, job.train_url, job.output_path)
        if job.data_url and job.need_modelarts_dataset_unzip:
            unzip_dataset(job.data_path, job.modelarts_dataset_unzip_name)
        mark_done("inputs")
    else:
        wait_done("inputs")
    os.makedirs(job.output_path, exist_ok=True)


def rooted_paths(job, paths):
    """{key: path} placing the relative ones of `paths` ({key: path} of INPUT_KEYS, OUTPUT_KEYS
    and CHECKPOINT_KEYS) under the job section's data_path / output_path / load_path (step 2 of
    the flow)."""
    rooted = {}
    for keys, root in (
        (INPUT_KEYS, job.data_path),
        (OUTPUT_KEYS, job.output_path),
        (CHECKPOINT_KEYS, job.load_path),
    ):
        for key in keys:
            value = paths[key]
            if value and not os.path.isabs(value):
                rooted[key] = os.path.join(root, value)
    return rooted


def upload_outputs(job, mox, writer):
    """Step 3: output_path -> train_url from the first device of each server."""
    if writer and job.train_url and os.path.isdir(job.output_path):
        copy_url(mox, job.output_path, job.train_url)


@contextlib.contextmanager
def modelarts_job(cfg):
    """Around one run: yields the Config the run uses (its paths rooted on ModelArts)."""
    job = cfg.job
    if not job.enable_modelarts:
        yield cfg
        return
    mox = import_moxing()
    writer = is_server_writer(device_id_from_env(), device_num_from_env())
    prepare_inputs(job, mox, writer)
    paths = {key: getattr(cfg, key) for key in INPUT_KEYS + OUTPUT_KEYS + CHECKPOINT_KEYS}
    try:
        yield cfg.replace(**rooted_paths(job, paths))
    except BaseException:
        try:  # the outputs of a failed run (logs, last checkpoints) are wanted too
            upload_outputs(job, mox, writer)
        except Exception as exc:  # report it, but keep the run's own error as the one raised
            log.error("ModelArts: copying %s to %s failed: %s", job.output_path, job.train_url, exc)
        raise
    upload_outputs(job, mox, writer)


def modelarts_entry(run):
    """`run(cfg)` with the Config of the command line (parsed once), inside `modelarts_job`."""

    @functools.wraps(run)
    def entry(argv=None):
        with modelarts_job(load_config(argv)) as cfg:
            return run(cfg)

    return entry
