"""Paths as users type them and input nobody vetted (docs/troubleshooting.md#paths-and-untrusted-input):
'~' and $VARS in path options, file names at the 255-byte limit, --overwrite=True replacing a
folder as a whole, annotation file names that leave the image folder, the .pth hint as a shell
command, YAML alias bombs, class names with '$' in plots and the report.

Each fault is met as a user meets it where that is cheap: a real process (create_data.py, eval.py,
a shell running the printed command, a process killed mid-run), its exit status, its one line and
the files it leaves."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.cli import assert_one_line_error, run_command, run_script

DATA_ARGS = ("--num_classes=4",)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny embedded COCO-layout set (2 val images) and a secret file outside its image folder."""
    from nasfpn.data.embedded import generate_embedded_dataset

    work = tmp_path_factory.mktemp("paths")
    root = generate_embedded_dataset(str(work / "data" / "shapes"), num_train=1, num_val=2, size=96, seed=5)
    return {"work": work, "root": str(root)}


def convert(root, mindrecord_dir, cwd, *extra, env=None):
    return run_command(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "create_data.py"),
            *DATA_ARGS,
            "--create_dataset=coco",
            f"--coco_root={root}",
            "--is_training=false",
            f"--mindrecord_dir={mindrecord_dir}",
            "--num_shards=1",
            *extra,
        ],
        cwd,
        env=env,
    )


def mindrecord_ids(path):
    from mindspore.mindrecord import FileReader

    reader = FileReader(path, columns=["img_id"])
    try:
        return sorted(int(row["img_id"][0]) for row in reader.get_next())
    finally:
        reader.close()


# ---- paths as typed ---------------------------------------------------------------------------


def test_tilde_and_variables_in_path_options_are_expanded_never_made_into_folders(shapes, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    data = os.path.dirname(shapes["root"])
    env = {"HOME": str(home), "DATA_ROOT": data}
    run = convert("$DATA_ROOT/shapes", "~/mr", cwd, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(os.listdir(home / "mr")) == [
        "retinanet_eval.mindrecord",
        "retinanet_eval.mindrecord.dataset.json",  # the dataset record (nasfpn/data/dataset_record.py)
        "retinanet_eval.mindrecord.db",
    ]
    assert os.listdir(cwd) == []  # no folder named '~' or '$DATA_ROOT'
    assert f"images from {data}/shapes/val2017" in run.stdout
    # A variable that is not set is refused (a folder named '$UNSET_ROOT' would be made otherwise).
    run = convert(shapes["root"], "${UNSET_ROOT}/mr", cwd, env=env)
    assert_one_line_error(
        run, 2, "--mindrecord_dir=${UNSET_ROOT}/mr: the environment variable UNSET_ROOT is not set"
    )
    assert os.listdir(cwd) == []


def test_path_keys_expand_and_urls_are_left_as_given(monkeypatch):
    from nasfpn.config.flat import ConfigError, is_path_key, load_config

    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.setenv("RUNS", "/runs")
    cfg = load_config(
        ["--eval_output_dir=~/eval", "--checkpoint_path=${RUNS}/a.ckpt", "--data_url=obs://bucket/$RUNS/~x"]
    )
    assert cfg.eval_output_dir == "/home/someone/eval" and cfg.checkpoint_path == "/runs/a.ckpt"
    assert cfg.data_url == "obs://bucket/$RUNS/~x"  # a URL, not a local path
    assert cfg.hub_cache_dir == "/home/someone/.cache/nasfpn"  # the default's '~' too
    assert cfg.replace(output_dir="$RUNS/infer").output_dir == "/runs/infer"
    assert all(is_path_key(k) for k in ("pre_trained", "backbone_pretrained", "file_name", "image"))
    with pytest.raises(ConfigError, match=r"^--pre_trained=~no_such_user_x/a.ckpt: no user 'no_such_user_x'"):
        load_config(["--pre_trained=~no_such_user_x/a.ckpt"])


def test_temporary_names_keep_a_255_byte_final_name_legal(tmp_path):
    from nasfpn.core.atomic import NAME_MAX_BYTES, temporary_name, write_json_atomic
    from nasfpn.core.storage import remove_stale_temporaries

    name = "é" * 120 + "-long.json"  # 250 bytes, 2-byte characters: a cut must not split one
    assert len(os.fsencode(name)) == 250
    target = tmp_path / name
    write_json_atomic(str(target), {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1} and os.listdir(tmp_path) == [name]
    tmp = temporary_name(name, pid=4_000_000)
    # At most the limit: one byte short here, as a 2-byte character is not split.
    assert NAME_MAX_BYTES - 1 <= len(os.fsencode(tmp)) <= NAME_MAX_BYTES and tmp.endswith(".json")
    assert tmp != temporary_name("é" * 120 + "-long2.json", pid=4_000_000)  # a hash tells them apart
    # A shortened temporary of a process that is gone is still recognised as this file's.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / temporary_name(name, pid=dead.pid)).write_text("{")
    removed, _ = remove_stale_temporaries(str(tmp_path), (name,), exact=True)
    assert [os.path.basename(p) for p in removed] == [temporary_name(name, pid=dead.pid)]
    assert os.listdir(tmp_path) == [name]


# ---- --overwrite=True replaces a folder as a whole ---------------------------------------------

CLAIM = """
import json, os, signal, sys
from nasfpn.core.storage import claim_output_dir
from nasfpn.evaluation.scoring import EVAL_RESULT_FILES
from nasfpn.evaluation.report import EVAL_OUTPUT_FILES
with claim_output_dir(sys.argv[1], "eval_output_dir", EVAL_RESULT_FILES, True,
                      output_patterns=EVAL_OUTPUT_FILES) as out:
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"AP": 0.9}, f)
    print(out, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if sys.argv[2] == "fail":
        raise SystemExit(1)
"""


def earlier_eval_folder(folder):
    folder.mkdir()
    files = {
        "metrics.json": '{"AP": 0.1}',
        "report.html": "<p>old</p>",
        "pr_curves.png": "old",
        "notes.txt": "mine",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "my_plots").mkdir()
    (folder / "my_plots" / "a.txt").write_text("mine too")
    return files


def contents(folder):
    """relative path -> text of the files under `folder`, but the lock file (a killed holder
    leaves it; its lock went with the process)."""
    from nasfpn.core.storage import OUTPUT_LOCK_NAME

    return {
        os.path.relpath(os.path.join(base, n), folder): open(os.path.join(base, n)).read()
        for base, _, names in os.walk(folder)
        for n in names
        if n != OUTPUT_LOCK_NAME
    }


@pytest.mark.parametrize("how", ["kill", "fail"])
def test_an_overwrite_run_killed_or_failed_midway_leaves_the_earlier_folder(tmp_path, how):
    out = tmp_path / "eval"
    earlier_eval_folder(out)
    before = contents(out)
    run = run_command([sys.executable, "-c", CLAIM, str(out), how], tmp_path)
    assert run.returncode == (-signal.SIGKILL if how == "kill" else 1), run.stderr[-3000:]
    fresh = run.stdout.strip()
    assert os.path.dirname(fresh) == str(tmp_path) and os.path.basename(fresh).startswith(".tmp")
    assert contents(out) == before  # the new metrics.json never sat beside the old report.html
    assert os.path.exists(fresh) == (how == "kill")  # a killed run cannot clean up after itself
    # The next run clears the killed run's fresh folder and replaces the earlier one as a whole.
    run = run_command([sys.executable, "-c", CLAIM, str(out), "finish"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["eval"]
    assert contents(out) == {
        "metrics.json": '{"AP": 0.9}',  # the new run's only result: no old report.html or plot
        "notes.txt": "mine",  # the user's files are carried over
        os.path.join("my_plots", "a.txt"): "mine too",
    }


def test_overwrite_refuses_a_mount_point_or_the_working_folder_in_one_line(tmp_path, monkeypatch):
    from nasfpn.core.storage import StorageError, replacing_folder

    with pytest.raises(StorageError, match=r"^--eval_output_dir=/: is a mount point, which --overwrite"):
        with replacing_folder("/", "eval_output_dir", ()):
            pass
    (tmp_path / "run" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "run" / "sub")
    for given in (".", str(tmp_path / "run")):
        with pytest.raises(StorageError, match=rf"^--output_dir={given}: is the working folder or holds it"):
            with replacing_folder(given, "output_dir", ()):
                pass
    assert os.listdir(tmp_path) == ["run"]


# ---- annotation file names that leave the image folder ------------------------------------------


def test_annotation_file_names_outside_the_image_folder_are_skipped_and_named(shapes, tmp_path):
    import shutil

    root = tmp_path / "shapes"
    shutil.copytree(shapes["root"], root)
    secret = tmp_path / "secret"
    secret.mkdir()
    val = root / "val2017"
    first = sorted(os.listdir(val))[0]
    shutil.copy(val / first, secret / "x.jpg")  # a readable image: only the name keeps it out
    anno_path = root / "annotations" / "instances_val2017.json"
    anno = json.loads(anno_path.read_text())
    template = anno["images"][0]
    crafted = {"../../secret/x.jpg": 900, str(secret / "x.jpg"): 901}
    for name, image_id in crafted.items():
        anno["images"].append({**template, "id": image_id, "file_name": name})
        box = next(a for a in anno["annotations"] if a["image_id"] == template["id"])
        anno["annotations"].append({**box, "id": 10_000 + image_id, "image_id": image_id})
    anno_path.write_text(json.dumps(anno))
    run = convert(str(root), str(tmp_path / "mr"), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "  file name leaves the image folder ('..' or an absolute path; --allow_outside_image_dir=True "
        f"reads it): 2 ('../../secret/x.jpg', '{secret / 'x.jpg'}')"
    ) in run.stdout
    ids = mindrecord_ids(str(tmp_path / "mr" / "retinanet_eval.mindrecord"))
    assert ids == sorted(i["id"] for i in anno["images"] if i["id"] not in crafted.values())
    # Allowed on purpose (in-process: the same samples the converter writes).
    from nasfpn.data.converters import Summary, coco_samples

    allowed = coco_samples(str(anno_path), str(val), False, Summary(), allow_outside=True)
    assert {i: p for i, p, _ in allowed if i in crafted.values()} == {
        900: os.path.join(str(val), "../../secret/x.jpg"),
        901: str(secret / "x.jpg"),
    }


# ---- the .pth hint as a shell command -----------------------------------------------------------


def test_the_pth_conversion_hint_is_safe_to_paste_into_a_shell(tmp_path):
    from nasfpn.model.backbone_weights import conversion_command

    name = str(tmp_path / "it's $(touch PWNED) `touch PWNED2`; touch PWNED3 \".pth")
    command = conversion_command(name)
    words = shlex.split(command)
    assert words[:2] == ["python", "-c"] and words[3:] == [name, name[:-4] + ".safetensors"]
    assert "weights_only=True" in words[2]
    # Pasted into a real shell (python without torch there: it fails importing, harmlessly).
    run = run_command(["bash", "-c", command.replace("python", shlex.quote(sys.executable), 1)], tmp_path)
    assert run.returncode != 0 and "torch" in run.stderr
    assert os.listdir(tmp_path) == []


# ---- YAML alias bombs ------------------------------------------------------------------------------

LEVELS = ["&a [x, x, x, x, x, x, x, x, x]"] + [
    f"&{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")
]
BOMB = "\n".join(f"{anchor[1]}: {anchor}" for anchor in LEVELS)  # a: &a [...], b: &b [*a, ...], ...
FLOW_BOMB = "[" + ", ".join(LEVELS) + "]"  # the same as one command-line value


def test_a_yaml_alias_bomb_is_refused_fast_in_one_line(tmp_path):
    from nasfpn.config.flat import ConfigError, MAX_CONFIG_VALUES, load_config

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 400  # 9**9 values once expanded
    start = time.perf_counter()
    with pytest.raises(
        ConfigError, match=rf"bomb.yaml line \d+: expands to more than {MAX_CONFIG_VALUES} values"
    ):
        load_config([f"--config_path={bomb}"])
    assert time.perf_counter() - start < 1.0  # counted while composing: nothing is built
    with pytest.raises(ConfigError, match=r"^--img_shape: the value expands to more than"):
        load_config(["--img_shape=" + FLOW_BOMB])
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("img_shape: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"line 1: the alias \*a is inside its own anchor &a"):
        load_config([f"--config_path={recursive}"])
    # The real process: one line, exit 2, well before any network is built.
    run = run_script("eval.py", [], [f"--config_path={bomb}"], cwd=str(tmp_path))
    assert_one_line_error(run, 2, f"{bomb} line", "expands to more than")


# ---- text from datasets in plots and the report ---------------------------------------------------

NASTY_NAMES = ("$\\badcommand{x}$", "a$b", "$\\frac{a}{b}$", "<script>alert(1)</script>")


def test_class_names_with_dollars_are_drawn_literally_and_escaped_in_html(tmp_path):
    """matplotlib's mathtext would typeset '$\\frac{a}{b}$' and fail the evaluation on an unknown
    command; the plots draw names as written, and the report escapes them."""
    import numpy as np

    from nasfpn.evaluation.analysis import ERROR_TYPES
    from nasfpn.evaluation.coco_metrics import STAT_KEYS
    from nasfpn.evaluation.plots import plot_confusion_matrix, plot_error_breakdown
    from nasfpn.evaluation.report import render_report

    matrix = np.arange(25).reshape(5, 5)
    assert os.path.getsize(plot_confusion_matrix(matrix, NASTY_NAMES, str(tmp_path / "cm.png"))) > 0
    points = {e: 1.0 for e in ERROR_TYPES}
    breakdown = {"overall": points, "per_class": [{"name": n, "points": points} for n in NASTY_NAMES]}
    assert os.path.getsize(plot_error_breakdown({**breakdown, "AP50": 0.5}, str(tmp_path / "e.png"))) > 0
    rows = [
        {"name": n, "category_id": k, "AP": 0.5, "AP50": 0.5, "AP75": 0.5, "AR100": 0.5, "num_gt": 1}
        for k, n in enumerate(NASTY_NAMES)
    ]
    breakdown["per_class"] = [{**r, **{"points": points}} for r in rows]
    uris = {"errors": "data:,", "pr_curves": "data:,", "confusion": "data:,"}
    page = render_report(
        "t",
        dict.fromkeys(STAT_KEYS, 0.5),
        rows,
        {**breakdown, "AP50": 0.5},
        uris,
        [("<b>x</b>.jpg: 1 errors", "data:,")],
    )
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "$\\frac{a}{b}$" in page
