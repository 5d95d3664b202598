"""The run_*.sh wrappers keep every run's log: a dated file per run (NAME_<YYYYmmdd-HHMMSS>.log,
starting with the command), NAME.log linking to the newest, and a log of an older version's single
file renamed rather than replaced. Each run here fails early (no MindRecord, a file that is not a
checkpoint or model), which is enough for the script to create its log."""

import os
import re
import shutil

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.cli import run_shell_script

DATED = re.compile(r"^(train|eval|infer|acc)_\d{8}-\d{6}(_\d+)?\.log$")


def _run(*args, **env):
    return run_shell_script(args, **env)


def _dated_logs(folder, name):
    return {n for n in os.listdir(folder) if DATED.match(n) and n.startswith(name + "_")}


@pytest.fixture
def own_logs(request):
    """Remove, after the test, the dated logs (and links) that the test's runs created in a
    repository log folder; an earlier run's files there stay."""
    created = []

    def watch(folder, name):
        before = _dated_logs(folder, name) if os.path.isdir(folder) else set()
        created.append((folder, name, before))
        return before

    yield watch
    for folder, name, before in created:
        for new in _dated_logs(folder, name) - before:
            os.remove(os.path.join(folder, new))
        link = os.path.join(folder, f"{name}.log")
        if os.path.islink(link) and not os.path.exists(link):
            os.remove(link)


@pytest.mark.slow
def test_single_training_keeps_the_log_of_every_run(tmp_path, own_logs):
    folder = os.path.join(REPO_ROOT, "outputs", "train_single")
    before = own_logs(folder, "train")
    for _ in range(2):
        run = _run("scripts/run_single_train.sh", "CPU", "0", str(tmp_path))
        assert run.returncode != 0  # no MindRecord in tmp_path
    logs = sorted(_dated_logs(folder, "train") - before)
    assert len(logs) == 2  # two runs in one second get NAME_<stamp>.log and NAME_<stamp>_2.log
    for name in logs:
        text = open(os.path.join(folder, name)).read()
        assert text.startswith("# ") and "run_single_train.sh CPU 0" in text.splitlines()[0]
        assert f"error: no MindRecord 'retinanet.mindrecord' in {tmp_path}" in text
    assert os.readlink(os.path.join(folder, "train.log")) in logs


def test_eval_script_keeps_an_older_versions_log_and_each_run(tmp_path):
    device = "97"  # outputs/eval_97: a folder of this test only, removed at the end
    folder = os.path.join(REPO_ROOT, "outputs", f"eval_{device}")
    assert not os.path.exists(folder)
    os.makedirs(folder)
    old = os.path.join(folder, "eval.log")
    with open(old, "w") as f:
        f.write("an earlier version's log\n")
    ckpt, ann = tmp_path / "model.ckpt", tmp_path / "ann.json"
    ckpt.write_text("not a checkpoint")
    ann.write_text('{"images": [], "annotations": [], "categories": []}')
    try:
        for _ in range(2):
            run = _run("scripts/run_eval.sh", "CPU", device, "coco", str(tmp_path), str(ckpt), str(ann))
            assert run.returncode != 0
        logs = _dated_logs(folder, "eval")
        assert len(logs) == 3  # the old file under a dated name, and the two runs
        texts = [open(os.path.join(folder, n)).read() for n in sorted(logs)]
        assert sum(t == "an earlier version's log\n" for t in texts) == 1
        assert sum("run_eval.sh CPU 97 coco" in t for t in texts) == 2
    finally:
        shutil.rmtree(folder)


def test_twin_script_keeps_inference_and_accuracy_logs_of_every_run(tmp_path):
    out = tmp_path / "out"
    model, images, ann = tmp_path / "m.onnx", tmp_path / "images", tmp_path / "ann.json"
    model.write_text("not a model")
    images.mkdir()
    ann.write_text("{}")
    for _ in range(2):
        run = _run("scripts/run_infer_twin.sh", str(model), str(images), str(ann), OUT_DIR=str(out))
        assert run.returncode != 0
        assert f"infer_310_twin.py failed; see {out / os.readlink(out / 'infer.log')}" in run.stderr
    assert len(_dated_logs(out, "infer")) == 2 and len(_dated_logs(out, "acc")) == 2


def test_plot_loss_titles_the_plot_with_the_run(tmp_path):
    import cv2
    from scripts.plot_loss import main, run_title

    folder = tmp_path / "outputs" / "defects" / "ckpt" / "ckpt_0"
    folder.mkdir(parents=True)
    log = folder / "train_log.csv"
    log.write_text(
        "global_step,epoch,loss,lr,seconds\n" + "".join(f"{i},1,{2.0 / i},0.01,0.5\n" for i in range(1, 31))
    )
    assert run_title(str(log)) == "NAS-FPN training: defects/ckpt/ckpt_0"
    main([str(log), str(tmp_path / "a.png")])
    main([str(log), str(tmp_path / "b.png"), "--title", "run 2"])
    a, b = cv2.imread(str(tmp_path / "a.png")), cv2.imread(str(tmp_path / "b.png"))
    assert a is not None and a.shape == b.shape  # both drawn, same size
    assert (a != b).any()  # only the titles differ
    with pytest.raises(SystemExit) as missing:
        main([str(tmp_path / "absent.csv"), str(tmp_path / "c.png")])
    assert missing.value.code == 2
