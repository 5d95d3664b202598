"""Faults of the running process: signals, resource limits, files of the wrong kind, inputs that
change under a run, and the benchmarks' --help. Real processes throughout: signals are sent to a
running entry point once it reports progress, limits are set with setrlimit in the child, full
disks are tmpfs mounts, damaged files have flipped bytes.

The rule checked everywhere (nasfpn/core/exits.py, nasfpn/core/interrupts.py): exit 2 with one line
`error: ...` for what the user can fix, 1 for a failed run, 130 / 143 with one line
`stopped by SIGINT|SIGTERM: <what is complete>` for a signal, never a traceback; what is complete
is kept, temporaries are removed.
"""

import glob
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, TINY, make_config
from tests.helpers.cli import ENV, assert_one_line_error, run_command
from tests.helpers.filesystems import tmpfs

ARGS = (*TINY, "--num_classes=4")  # the embedded set: 3 shapes + background


def entry(script, *args):
    return [sys.executable, os.path.join(REPO_ROOT, script), *args]


def leftovers(folder):
    """Temporaries and locks of this project's writers under `folder` (none may stay)."""
    names = [
        os.path.basename(p)
        for p in glob.glob(os.path.join(glob.escape(str(folder)), "**", ".*"), recursive=True)
    ]
    return [n for n in names if n.startswith(".tmp") or n.endswith(".lock")]


def signal_when(command, ready, signum, cwd, timeout=300):
    """Start `command`; once `ready(stderr so far)` holds, send `signum`; returns (status, stderr).
    Waiting for the run's own progress avoids a race with its start-up (and one signal is sent:
    two pending standard signals are one)."""
    err_path = os.path.join(str(cwd), f"stderr-{time.monotonic_ns()}.txt")
    with open(err_path, "w") as err:
        process = subprocess.Popen(
            command, cwd=str(cwd), env={**ENV, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=err
        )
    deadline = time.monotonic() + timeout
    while not ready(open(err_path).read()):
        assert process.poll() is None, f"ended before the signal: {open(err_path).read()[-3000:]}"
        assert time.monotonic() < deadline, "no progress in time"
        time.sleep(0.05)
    process.send_signal(signum)
    status = process.wait(timeout=timeout)
    return status, open(err_path).read()


def assert_stopped(status, stderr, signum):
    """The signal rule: 128 + signal, no traceback, one `stopped by` line; returns that line."""
    assert status == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by ")]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"stopped by {signal.Signals(signum).name}: ")
    assert lines[0].endswith(f"temporaries removed (exit {128 + signum})")
    return lines[0]


def write_images(folder, count, side=64, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = cv2.GaussianBlur((rng.random((side, side, 3)) * 255).astype(np.uint8), (5, 5), 0)
        cv2.imwrite(os.path.join(folder, f"img{i:03d}.jpg"), image)
    return str(folder)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A TINY 4-class ONNX model, 60 small images, the embedded set's eval MindRecord of 40 images."""
    import mindspore as ms
    import create_data
    from nasfpn.data.embedded import generate_embedded_dataset
    from nasfpn.deploy.export import export_network
    from nasfpn.inference.build import build_inference_network

    folder = tmp_path_factory.mktemp("signals")
    ms.set_seed(3)
    onnx = export_network(
        build_inference_network(make_config(*ARGS)), str(folder / "four"), "ONNX", 1, (128, 128)
    )
    root = generate_embedded_dataset(str(folder / "shapes"), num_train=1, num_val=40, size=64, seed=5)
    create_data.main(
        [
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={folder / 'mr'}",
            "--num_shards=1",
            "--num_classes=4",
        ]
    )
    return {
        "dir": folder,
        "onnx": onnx,
        "images": write_images(folder / "images", 60),
        "root": root,
        "mr": str(folder / "mr"),
        "anno": os.path.join(root, "annotations", "instances_val2017.json"),
    }


# ---- the Ctrl-C rule --------------------------------------------------------------------------


def test_a_signal_is_held_through_a_deferred_block_and_a_second_one_is_ignored():

    # a process started in the background inherits SIGINT ignored; the rule restores what it found
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _held_signal_checks()
    finally:
        signal.signal(signal.SIGINT, previous)


def _held_signal_checks():
    from nasfpn.core.interrupts import Interrupted, deferred_signals, stop_on_signals

    reached = []
    with pytest.raises(Interrupted) as stopped, stop_on_signals():
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs: held, not raised inside the block
            reached.append("end of block")
        reached.append("after the block")  # not reached: raised as the block ends
    assert reached == ["end of block"]
    assert stopped.value.exit_status == 143 and stopped.value.signal_name == "SIGTERM"
    with pytest.raises(Interrupted), stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        finally:  # clean-up after the first signal is not cut by a second one
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            reached.append("clean-up done")
    assert reached[-1] == "clean-up done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.slow
def test_sigint_in_infer_keeps_the_drawn_images_and_names_them(work, tmp_path):
    out = tmp_path / "out"
    command = entry(
        "infer.py", *ARGS, f"--image={work['images']}", f"--model_path={work['onnx']}",
        f"--output_dir={out}", f"--anno_path={work['anno']}",
    )  # fmt: skip
    started = re.compile(r"\b[1-9]\d*/60 \[")  # an image decoded: the loop runs
    status, stderr = signal_when(command, started.search, signal.SIGINT, tmp_path)
    line = assert_stopped(status, stderr, signal.SIGINT)
    drawn = int(line.split("stopped by SIGINT: ")[1].split(" of 60")[0])
    assert 0 <= drawn < 60, line
    assert "detections.json was not written" in line
    assert out.exists() == bool(drawn)  # a folder this run made and left empty is removed
    files = sorted(os.listdir(out)) if drawn else []
    assert len(files) == drawn and all(f.endswith("_det.jpg") for f in files), files
    for name in files:  # each kept picture is whole
        assert cv2.imread(str(out / name)).shape == (64, 64, 3)
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_sigterm_in_eval_writes_no_results_and_leaves_no_folder(work, tmp_path):
    out = tmp_path / "eval"
    command = entry(
        "eval.py", *ARGS, f"--model_path={work['onnx']}", f"--mindrecord_dir={work['mr']}",
        f"--coco_root={work['root']}", f"--eval_output_dir={out}",
    )  # fmt: skip
    status, stderr = signal_when(
        command, lambda err: "eval:" in err and "/40 [" in err, signal.SIGTERM, tmp_path
    )
    assert_stopped(status, stderr, signal.SIGTERM)
    assert not out.exists()  # made by this run, empty: removed


@pytest.mark.slow
def test_sigterm_in_create_data_keeps_the_earlier_shards_byte_for_byte(work, tmp_path):
    images = write_images(tmp_path / "many", 1000, side=32, seed=1)  # about a second of writing
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{name} 4,4,20,20,1\n" for name in sorted(os.listdir(images))))
    out = tmp_path / "mr"
    base = [
        "--create_dataset=other", f"--image_dir={images}", f"--anno_path={listing}",
        f"--mindrecord_dir={out}", "--num_classes=4", "--num_shards=2",
    ]  # fmt: skip
    first = run_command(entry("create_data.py", *base), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    earlier = {name: (out / name).read_bytes() for name in os.listdir(out)}
    status, stderr = signal_when(
        entry("create_data.py", *base, "--overwrite=True"),
        lambda err: "writing " in err,
        signal.SIGTERM,
        tmp_path,
    )
    line = assert_stopped(status, stderr, signal.SIGTERM)
    assert "the 4 earlier file(s) of 'retinanet.mindrecord' are unchanged" in line
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == earlier
    assert leftovers(out) == []


@pytest.mark.slow
def test_sigint_during_a_mindir_export_stops_when_it_returns_and_removes_it(tmp_path):
    """MindSpore's export swallowed the signal's exception and finished (exit 0); now the signal
    is held until the export returns, then the partial model is removed."""
    target = tmp_path / "model.mindir"
    command = entry("export.py", *ARGS, f"--file_name={tmp_path / 'model'}", "--file_format=MINDIR")
    exporting = re.compile(r"^\.tmp\d+-model\.mindir$")  # the export's folder (not the write probe)
    status, stderr = signal_when(
        command, lambda err: any(exporting.match(n) for n in os.listdir(tmp_path)), signal.SIGINT, tmp_path
    )
    assert_stopped(status, stderr, signal.SIGINT)
    assert "SIGINT: stopping once the current write is complete" in stderr
    assert not target.exists()
    assert leftovers(tmp_path) == []


# ---- limits: file size, disk room, address space ---------------------------------------------


def with_limit(kind, value):
    def set_limit():
        resource.setrlimit(kind, (value, value))

    return set_limit


def run_limited(command, cwd, kind, value):
    return subprocess.run(
        command,
        cwd=str(cwd),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=with_limit(kind, value),
    )


@pytest.mark.slow
def test_a_file_size_limit_hit_by_the_report_keeps_the_metrics_and_says_so(work, tmp_path):
    full = tmp_path / "full"
    args = [
        *ARGS,
        f"--model_path={work['onnx']}",
        f"--mindrecord_dir={work['mr']}",
        f"--coco_root={work['root']}",
    ]
    assert run_command(entry("eval.py", *args, f"--eval_output_dir={full}"), tmp_path).returncode == 0
    sizes = {name: os.path.getsize(full / name) for name in os.listdir(full)}
    needed = max(sizes["predictions.json"], sizes["metrics.json"], sizes["analysis.json"])
    assert sizes["report.html"] > needed + 4096  # the limit below fails the report only
    out = tmp_path / "limited"
    run = run_limited(
        entry("eval.py", *args, f"--eval_output_dir={out}"), tmp_path, resource.RLIMIT_FSIZE, needed + 4096
    )
    assert_one_line_error(
        run,
        2,
        f"could not write {out} (file too large",
        f"predictions.json and metrics.json in {out} are complete",
    )
    assert (out / "predictions.json").read_bytes() == (full / "predictions.json").read_bytes()
    # metrics.json states when it was made (evaluated_at): the rest is the same run's
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, full))
    assert ours.pop("evaluated_at") and theirs.pop("evaluated_at") and ours == theirs
    assert not (out / "report.html").exists() and leftovers(out) == []


def test_create_data_refuses_a_disk_without_mindspores_free_minimum(work, tmp_path):
    """MindSpore's writer stops while 10 MB or less are free: a disk with room for the images only
    failed mid-write with its RuntimeError; now the estimate includes it and the run is refused."""
    with tmpfs(tmp_path / "disk", "4m") as disk:
        run = run_command(
            entry(
                "create_data.py", "--create_dataset=coco", f"--coco_root={work['root']}", "--is_training=false",
                f"--mindrecord_dir={disk}/mr", "--num_classes=4", "--num_shards=1",
            ),
            tmp_path,
        )  # fmt: skip
        assert_one_line_error(run, 2, f"--mindrecord_dir={disk}/mr: 4.0 MB free, the output needs about 11.")
        assert os.listdir(disk) == []


def test_an_address_space_limit_is_one_line_out_of_memory(work, tmp_path):
    command = entry(
        "infer.py",
        *ARGS,
        f"--image={work['images']}",
        f"--model_path={work['onnx']}",
        f"--output_dir={tmp_path / 'o'}",
        f"--anno_path={work['anno']}",
    )
    run = run_limited(command, tmp_path, resource.RLIMIT_AS, 300 * 2**20)
    assert_one_line_error(run, 1, "error: out of memory (", "address-space limit of 300 MB (ulimit -v)")
    assert "warning: the address-space limit (ulimit -v) is 300 MB" in run.stderr
    assert not (tmp_path / "o").exists()


# ---- files of the wrong kind, names that do not fit, values that mean nothing ----------------


def flipped(data, every=100003, start=1000):
    data = bytearray(data)
    data[start::every] = bytes(b ^ 0xFF for b in data[start::every])
    return bytes(data)


CASES = {
    # case: (files to make, extra options, status, fragment of the error)
    "onnx named .mindir": ("mindir", [], 2, "not a MINDIR model"),
    "onnx with flipped bytes": ("flipped", [], 2, "ONNX Runtime cannot load this model (damaged bytes"),
    "a folder as the model": ("folder", [], 2, "is a folder, expected a model file"),
    "NaN score threshold": (
        None,
        ["--score_threshold=nan"],
        2,
        "--score_threshold: expected in [0, 1], got nan",
    ),
    "an image whose drawn copy's name is too long": ("long", [], 2, "(its drawn copy; rename the image)"),
}


@pytest.mark.parametrize("case", CASES)
def test_infer_refuses_files_and_values_that_do_not_fit_in_one_line(work, tmp_path, case):
    make, extra, status, fragment = CASES[case]
    model, images = work["onnx"], work["images"]
    if make == "mindir":
        model = str(tmp_path / "model.mindir")
        os.symlink(work["onnx"], model)
    elif make == "flipped":
        model = str(tmp_path / "model.onnx")
        with open(work["onnx"], "rb") as f:
            open(model, "wb").write(flipped(f.read()))
    elif make == "folder":
        model = str(tmp_path)
    elif make == "long":
        images = str(tmp_path / "long")
        os.makedirs(images)
        os.symlink(
            os.path.join(work["images"], "img000.jpg"), os.path.join(images, "n" * 250 + ".jpg")
        )  # 258 bytes drawn
    out = tmp_path / "out"
    command = entry(
        "infer.py",
        *ARGS,
        f"--image={images}",
        f"--model_path={model}",
        f"--output_dir={out}",
        f"--anno_path={work['anno']}",
        *extra,
    )
    assert_one_line_error(run_command(command, tmp_path), status, fragment)
    assert not out.exists()


def test_an_export_name_too_long_for_the_file_system_is_refused_before_the_export(tmp_path):
    name = tmp_path / ("m" * 252)  # 257 bytes with .onnx: over every file system's 255
    run = run_command(entry("export.py", *ARGS, f"--file_name={name}", "--file_format=ONNX"), tmp_path)
    assert_one_line_error(run, 2, "the file name is 257 bytes long, over the 255 the file system allows")
    assert os.listdir(tmp_path) == []


def test_eval_refuses_a_ground_truth_box_of_negative_size(work, tmp_path):
    with open(work["anno"]) as f:
        coco = json.load(f)
    coco["annotations"][0]["bbox"] = [10, 10, -5, 4]
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(coco))
    command = entry(
        "eval.py", *ARGS, f"--model_path={work['onnx']}", f"--mindrecord_dir={work['mr']}",
        f"--coco_root={work['root']}", f"--anno_path={anno}", f"--eval_output_dir={tmp_path / 'e'}",
    )  # fmt: skip
    assert_one_line_error(run_command(command, tmp_path), 2, "has a negative or non-finite width/height")
    assert not (tmp_path / "e").exists()


def test_a_label_matplotlib_cannot_draw_says_the_metrics_are_complete(tmp_path):
    from nasfpn.core.errors import RunError
    from nasfpn.evaluation.report import analysis_errors, plot_pr_curves_empty

    def draw_label(text):  # what the plots do with a class name: mathtext for `$...$`
        from nasfpn.evaluation.plots import _figure, save_figure

        plt, figure = _figure(2, 2)
        figure.suptitle(text)
        save_figure(plt, figure, str(tmp_path / "label.png"))

    plot_pr_curves_empty(str(tmp_path / "ok.png"))  # matplotlib itself works here
    try:
        draw_label("$x^$")
    except ValueError:
        with pytest.raises(RunError, match=rf"the plots and report.html could not be drawn \(ValueError: .*\); "
                           rf"predictions.json and metrics.json in {tmp_path} are complete"):  # fmt: skip
            with analysis_errors(str(tmp_path)):
                draw_label("$x^$")
    else:
        pytest.skip("this matplotlib (or a label fix) draws '$x^$': nothing left for the guard to catch")
    assert leftovers(tmp_path) == []


# ---- inputs that change under a running training ----------------------------------------------


@pytest.mark.slow
def test_a_shard_deleted_while_training_stops_with_one_line_and_keeps_the_checkpoint(
    tiny_mindrecord, tmp_path
):
    from tests.helpers.tiny_training import SHORT_SCHEDULE, TRAIN_ARGS

    data = tmp_path / "mr"
    os.makedirs(data)
    for path in glob.glob(os.path.join(tiny_mindrecord[0], "retinanet.mindrecord*")):
        open(data / os.path.basename(path), "wb").write(open(path, "rb").read())
    command = entry(
        "train.py", *TRAIN_ARGS, *SHORT_SCHEDULE, f"--mindrecord_dir={data}",
        f"--save_checkpoint_path={tmp_path / 'ck'}", "--epoch_size=3", "--device_target=CPU",
    )  # fmt: skip
    err_path = tmp_path / "train.err"
    with open(err_path, "w") as err:
        process = subprocess.Popen(command, cwd=str(tmp_path), env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    while "(global 1)" not in err_path.read_text():
        assert process.poll() is None, err_path.read_text()[-3000:]
        time.sleep(0.1)
    os.remove(data / "retinanet.mindrecord1")  # epoch 2 opens the shards again
    process.wait(timeout=600)
    run = subprocess.CompletedProcess(command, process.returncode, "", err_path.read_text())
    assert_one_line_error(run, 2, "training stopped reading epoch 2", "retinanet.mindrecord1: missing")
    assert os.path.isfile(tmp_path / "ck" / "ckpt_0" / "retinanet-1_4.ckpt")
    assert leftovers(tmp_path / "ck") == []


# ---- the benchmarks ---------------------------------------------------------------------------


def test_every_benchmark_answers_help_without_running_or_writing(tmp_path):
    results = tmp_path / "RESULTS.md"
    scripts = sorted(glob.glob(os.path.join(REPO_ROOT, "bench", "bench_*.py")))
    processes = [
        subprocess.Popen(
            [sys.executable, script, "--help"], cwd=str(tmp_path), env={**ENV, "BENCH_RESULTS": str(results)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for script in scripts
    ]  # fmt: skip
    for script, process in zip(scripts, processes):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (script, err[-2000:])
        assert "Traceback" not in err and os.path.basename(script) in out + err, (script, out[:500])
    assert not results.exists() and os.listdir(tmp_path) == []
