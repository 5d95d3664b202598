"""bench/common.py's writer of bench/RESULTS.md: a benchmark replaces only its own section, by a
rename, and every section of the committed file carries its date / machine / command header."""

import os
import re

import pytest

from bench.common import RESULTS_PATH, split_sections, write_results_section

MACHINE = "Test CPU, 2 cores, Python 3.x, MindSpore 0"
HEADER = re.compile(r"^Measured \d{4}-\d{2}-\d{2} on .+, \d+ cores, .*MindSpore \S+.* by `[^`]+`\.$")


def write(path, name, body, date="2026-01-01"):
    return write_results_section(name, body, MACHINE, f"python bench/{name}.py", date=date, path=str(path))


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "RESULTS.md"
    write(path, "alpha", "| a |\n|---|\n| 1 |")
    write(path, "beta", "caption\n\n| b |\n|---|\n| 2 |\n\n### detail\n\ntext")
    write(path, "gamma", "| c |\n|---|\n| 3 |")
    return path


def test_new_file_has_title_and_sections_in_order(results):
    text = results.read_text()
    assert text.startswith("# Benchmarks\n\n")
    preamble, sections = split_sections(text)
    assert [name for name, _ in sections] == ["alpha", "beta", "gamma"]
    assert sections[1][1] == (
        "## beta\n\nMeasured 2026-01-01 on Test CPU, 2 cores, Python 3.x, MindSpore 0 by "
        "`python bench/beta.py`.\n\ncaption\n\n| b |\n|---|\n| 2 |\n\n### detail\n\ntext\n\n"
    )
    assert text.endswith("| 3 |\n")


def test_replacing_a_section_keeps_the_others_byte_for_byte(results):
    before = results.read_text()
    old_preamble, old = split_sections(before)
    write(results, "beta", "| b |\n|---|\n| 99 |", date="2026-02-02")
    preamble, new = split_sections(results.read_text())
    assert preamble == old_preamble
    assert [n for n, _ in new] == ["alpha", "beta", "gamma"]
    assert new[0] == old[0] and new[2] == old[2]
    assert "| 99 |" in new[1][1] and "Measured 2026-02-02" in new[1][1] and "| 2 |" not in new[1][1]
    # And back: the file is what it was, so repeated runs do not drift.
    write(results, "beta", "caption\n\n| b |\n|---|\n| 2 |\n\n### detail\n\ntext")
    assert results.read_text() == before


def test_a_new_section_is_appended(results):
    before = results.read_text()
    write(results, "delta", "| d |\n|---|\n| 4 |")
    text = results.read_text()
    assert text.startswith(before) and text[len(before) :].startswith("\n## delta\n")


def test_the_file_is_replaced_by_a_rename(results):
    # A reader that opened the old file keeps reading the old, complete text: nothing wrote into it.
    before = results.read_text()
    with open(results) as reader:
        write(results, "alpha", "| a |\n|---|\n| changed |")
        assert reader.read() == before
    assert "| changed |" in results.read_text()
    assert sorted(os.listdir(results.parent)) == ["RESULTS.md"]  # no temporary left


def test_a_failed_write_leaves_the_file_and_no_temporary(results, monkeypatch):
    before = results.read_text()

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write(results, "alpha", "| a |\n|---|\n| lost |")
    monkeypatch.undo()
    assert results.read_text() == before
    assert sorted(os.listdir(results.parent)) == ["RESULTS.md"]


def test_a_body_that_would_start_another_section_is_refused(results):
    before = results.read_text()
    with pytest.raises(ValueError, match=r"body of section 'alpha' has a '## ' line.*use '### '"):
        write(results, "alpha", "| a |\n\n## sneaky\n\n| x |")
    with pytest.raises(ValueError, match="section name must be one non-empty line"):
        write(results, "two\nlines", "| a |")
    assert results.read_text() == before


def test_every_section_of_the_committed_results_says_when_where_and_how():
    with open(RESULTS_PATH, encoding="utf-8") as f:
        preamble, sections = split_sections(f.read())
    assert preamble.startswith("# Benchmarks\n")
    assert len(sections) >= 8
    for name, text in sections:
        header = text.splitlines()[2]
        assert HEADER.match(header), f"section {name!r} of bench/RESULTS.md: header {header!r}"


def test_bench_demo_records_an_existing_run(tmp_path, monkeypatch):
    """bench_demo.py --no_run reads the demo's metrics.json files and train_log.csv and writes its
    section; the figures in it are the files' own, rounded to 3 places."""
    import json
    from bench import bench_demo

    demo = tmp_path / "demo"
    for folder, ap in (("eval", 0.5684), ("eval_int8", 0.5661)):
        (demo / folder).mkdir(parents=True)
        (demo / folder / "metrics.json").write_text(json.dumps({"AP": ap, "AP50": 0.9024, "AP75": 0.61}))
    (demo / "ckpt" / "ckpt_0").mkdir(parents=True)
    (demo / "ckpt" / "ckpt_0" / "train_log.csv").write_text(
        "global_step,epoch,loss,lr,seconds\n1,1,3.0,0.01,9.0\n2,1,2.0,0.02,0.40\n3,1,1.5,0.03,0.44\n"
    )
    results = tmp_path / "RESULTS.md"
    monkeypatch.setenv("BENCH_RESULTS", str(results))
    bench_demo.main(["--no_run", f"--demo_dir={demo}"])
    ((name, text),) = split_sections(results.read_text())[1]
    assert name == "The demo"
    assert HEADER.match(text.splitlines()[2]) and f"--demo_dir={demo}`" in text
    assert "| checkpoint (`eval.py --checkpoint_path`) | 0.568 | 0.902 | 0.610 |" in text
    assert "| ONNX INT8 (`eval.py --model_path`) | 0.566 | 0.902 | 0.610 |" in text
    assert "ONNX fp32" not in text  # no eval_onnx/ in this run: no row
    # 3 steps; the first (graph compilation, 9 s) is left out of the median of 0.40 and 0.44.
    assert "Training: 3 steps, median 0.42 s/step" in text and "whole demo" not in text
