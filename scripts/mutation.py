"""Mutation testing with mutmut 3, one module (file or package folder) at a time.

Used by scripts/run_mutation.sh; see docs/mutation.md. Each module gets its own working copy of
the repository under .mutation/<slug>/ (git-ignored), with a setup.cfg that tells mutmut which file
to mutate and which fast tests to run, so nasfpn/ and the worktree are never touched.

  python scripts/mutation.py prepare MODULE   -> prints the working copy's path
  python scripts/mutation.py report MODULE    -> per-module score, survivors list
"""

import argparse
import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK_ROOT = os.path.join(REPO_ROOT, ".mutation")
EQUIVALENTS = os.path.join(REPO_ROOT, "docs", "mutation_equivalents.tsv")

# module -> the fast test files that exercise it (globs, so a new file beside a subject's file, such as
# tests/test_matching_<part>.py, joins automatically; an entry starting with "-" is a pytest option,
# one starting with "!" a file left out). mutmut then runs, for each mutant, only the tests
# that called the mutated function during its first (clean) pass.
CHECKPOINT_NETWORK_TESTS = [
    f"--deselect=tests/test_checkpoint.py::{name}"
    for name in (
        "test_release_style_checkpoint_loads_and_optimizer_state_is_ignored",
        "test_missing_or_misshapen_parameters_are_refused_without_partial_load",
        "test_unreadable_and_absent_files",
        "test_sha256_is_checked_before_loading",
        "test_atomic_save_round_trip",
        "test_parameters_the_network_does_not_have_are_refused",
        "test_filter_weight_skips_the_class_head_both_ways",
    )
]
TESTS_BY_MODULE = {
    # tests/test_detections_graph.py (the ONNX detections graph, a deploy subject whose name starts
    # like the post-processing's) exports and runs graphs: seconds per mutant, left out.
    "nasfpn/ops/boxes.py": [
        "tests/test_anchors_and_coding*.py",
        "tests/test_matching*.py",
        "tests/test_detections*.py",
        "!tests/test_detections_graph.py",
    ],
    "nasfpn/ops/loss.py": ["tests/test_loss*.py"],
    "nasfpn/inference/detections.py": [
        "tests/test_detections*.py",
        "!tests/test_detections_graph.py",
    ],
    "nasfpn/data/transforms.py": ["tests/test_transforms*.py", "tests/test_data_conversion*.py"],
    # the tests of tests/test_checkpoint.py on the full 640x640 network (15-30 s a test): left out.
    # tests/test_trainer_faults.py's fast tests cover the atomic save and the stale temporaries.
    "nasfpn/model_files/checkpoint.py": [
        "tests/test_checkpoint*.py",
        "tests/test_trainer_faults.py",
        *CHECKPOINT_NETWORK_TESTS,
    ],
    # sha256 and image-folder listing; the listing's users (infer, 310 twin, calibration) build networks.
    "nasfpn/core/files.py": ["tests/test_hub*.py", "tests/test_checkpoint*.py", *CHECKPOINT_NETWORK_TESTS],
    # the hub network test builds the full network and loads a checkpoint (15 s): left out.
    "nasfpn/inference/hub.py": [
        "tests/test_hub*.py",
        "--deselect=tests/test_hub.py::"
        "test_hub_network_has_the_manifest_names_and_loads_a_downloaded_checkpoint",
    ],
    # mutmut wraps every function in a trampoline, which MindSpore's graph compiler cannot
    # parse: the one GRAPH_MODE test is left out (the others run the cells in PyNative mode).
    "nasfpn/model": [
        "tests/test_network*.py",
        "tests/test_golden_network*.py",
        "--deselect=tests/test_network.py::test_forward_640_release_shapes",
    ],
}

# mutmut exit-code classes (mutmut.stats.status_by_exit_code) grouped for the score.
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
NOT_RUN = {"not checked", "check was interrupted by user", "skipped"}


class MutationSetupError(Exception):
    """A module or test mapping the driver cannot work with."""


def normalise_module(module):
    rel = os.path.relpath(os.path.abspath(module), REPO_ROOT).replace(os.sep, "/")
    if not os.path.exists(os.path.join(REPO_ROOT, rel)):
        raise MutationSetupError(f"{module}: no such file or folder in {REPO_ROOT}")
    if not rel.startswith("nasfpn/"):
        raise MutationSetupError(f"{module}: only modules under nasfpn/ can be mutated")
    return rel.rstrip("/")


def slug_of(module):
    return module.replace("/", "_").replace(".py", "")


def test_files_for(module):
    """The mapped test files that exist, sorted, then the mapped pytest options; an unmapped
    module is refused by name."""
    if module not in TESTS_BY_MODULE:
        known = ", ".join(sorted(TESTS_BY_MODULE))
        raise MutationSetupError(
            f"{module}: no test mapping in scripts/mutation.py (TESTS_BY_MODULE knows {known})"
        )
    files, options, left_out = set(), [], set()
    for pattern in TESTS_BY_MODULE[module]:
        if pattern.startswith("-"):
            options.append(pattern)
            continue
        found = left_out if pattern.startswith("!") else files
        found.update(
            os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, pattern.lstrip("!")))
        )
    files -= left_out
    if not files:
        raise MutationSetupError(f"{module}: none of {TESTS_BY_MODULE[module]} exists")
    return sorted(files) + options


def repository_files():
    """Tracked and untracked-but-not-ignored files (so new tests count before they are committed);
    a tarball or copy without .git falls back to walking the tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        ).stdout.decode()
        return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(REPO_ROOT, p))]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", ".mutation", "outputs", "__pycache__", ".pytest_cache"}
        files = []
        for root, dirs, names in os.walk(REPO_ROOT):
            dirs[:] = [d for d in dirs if d not in skip]
            files += [os.path.relpath(os.path.join(root, n), REPO_ROOT) for n in names]
        return files


def fresh_working_copy(work_dir):
    if os.path.isdir(work_dir):
        shutil.rmtree(work_dir)
    for rel in repository_files():
        target = os.path.join(work_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO_ROOT, rel), target)


def mutmut_config(module, test_files, top_level_entries):
    """setup.cfg [mutmut] section. The whole nasfpn/ package is copied into mutmut's mutants/ tree so
    imports resolve; only_mutate picks the module. Everything else at the top level (configs,
    pytest.ini, default_config.yaml, hub/ ...) is copied alongside because tests read it."""
    only = module if module.endswith(".py") else module + "/*"
    also_copy = [e for e in top_level_entries if e not in ("nasfpn", "tests", "setup.cfg")]
    lines = [
        "[mutmut]",
        "source_paths = nasfpn",
        f"only_mutate = {only}",
        "pytest_add_cli_args =",
        "    -m",
        "    not slow",
        "    -p",
        "    no:cacheprovider",
        "pytest_add_cli_args_test_selection =",
    ]
    lines += [f"    {t}" for t in test_files]
    lines += ["also_copy ="] + [f"    {e}" for e in also_copy]
    # results depend only on nasfpn/ and tests/ here, and the working copy is made fresh each run.
    lines += [
        "use_git_change_detection = false",
        # MindSpore's runtime threads do not survive a fork from a process that has run
        # ops (every mutant then hangs until its timeout): fork each mutant from a server
        # that has only imported and collected the tests.
        "process_isolation = forkserver",
        "forkserver_warmup = collect",
        "",
    ]
    return "\n".join(lines)


def prepare(module):
    module = normalise_module(module)
    test_files = test_files_for(module)
    work_dir = os.path.join(WORK_ROOT, slug_of(module))
    fresh_working_copy(work_dir)
    top = sorted(os.listdir(work_dir))
    with open(os.path.join(work_dir, "setup.cfg"), "w") as f:
        f.write(mutmut_config(module, test_files, top))
    print(work_dir)


def read_equivalents(path=EQUIVALENTS):
    """mutant name -> reason, from the hand-judged list (tab-separated, # comments)."""
    judged = {}
    if not os.path.exists(path):
        return judged
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            name, sep, reason = line.rstrip("\n").partition("\t")
            if not sep or not reason.strip():
                raise MutationSetupError(f"{path}:{lineno}: expected 'mutant<TAB>reason'")
            judged[name.strip()] = reason.strip()
    return judged


def results_of(work_dir, module):
    """mutant name -> status, read from mutmut's meta files of the mutated module's files."""
    sys.path.insert(0, work_dir)
    from mutmut.stats import status_by_exit_code  # noqa: E402 (mutmut is a dev requirement)

    statuses = {}
    mutants_root = os.path.join(work_dir, "mutants")
    for meta in sorted(glob.glob(os.path.join(mutants_root, "nasfpn", "**", "*.py.meta"), recursive=True)):
        source = os.path.relpath(meta, mutants_root)[: -len(".meta")].replace(os.sep, "/")
        if source != module and not fnmatch.fnmatch(source, module + "/*"):
            continue
        with open(meta) as f:
            exit_codes = json.load(f)["exit_code_by_key"]
        statuses.update({name: status_by_exit_code[code] for name, code in exit_codes.items()})
    return statuses


def score_line(module, statuses, equivalents):
    """The score counts the mutants that ran (a time-limited run leaves some 'not checked')."""
    not_run = sorted(n for n, s in statuses.items() if s in NOT_RUN)
    ran = {n: s for n, s in statuses.items() if s not in NOT_RUN}
    killed = sum(s in KILLED for s in ran.values())
    survivors = sorted(n for n, s in ran.items() if s not in KILLED)
    equivalent = [n for n in survivors if n in equivalents]
    live = len(ran) - len(equivalent)
    pct = 100.0 * killed / live if live else 100.0
    line = (
        f"{module}: killed {killed} / total {len(ran)}, survived "
        f"{len(survivors) - len(equivalent)}, equivalent {len(equivalent)} -> "
        f"{pct:.1f}% of non-equivalent mutants killed"
    )
    if not_run:
        line += f"; {len(not_run)} of {len(statuses)} not run (time limit)"
    return line, survivors


def record_score(module, line, path=os.path.join(WORK_ROOT, "scores.txt")):
    """Keep the latest score line of each module in one file (re-runs replace their line)."""
    lines = {}
    if os.path.exists(path):
        with open(path) as f:
            lines = dict(line.rstrip("\n").split(": ", 1) for line in f if ": " in line)
    lines[module] = line.split(": ", 1)[1]
    with open(path, "w") as f:
        f.writelines(f"{m}: {rest}\n" for m, rest in sorted(lines.items()))


def diff_of(work_dir, name):
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = os.getcwd()
    os.chdir(work_dir)  # mutmut resolves its files relative to the working directory
    try:
        return get_diff_for_mutant(name)
    finally:
        os.chdir(cwd)


def report(module):
    module = normalise_module(module)
    work_dir = os.path.join(WORK_ROOT, slug_of(module))
    if not os.path.isdir(os.path.join(work_dir, "mutants")):
        raise MutationSetupError(f"{module}: no mutmut results in {work_dir}; run it first")
    statuses = results_of(work_dir, module)
    equivalents = read_equivalents()
    line, survivors = score_line(module, statuses, equivalents)
    listing = os.path.join(WORK_ROOT, slug_of(module) + ".survivors.txt")
    with open(listing, "w") as f:
        f.write(line + "\n\n")
        for name in survivors:
            tag = "equivalent: " + equivalents[name] if name in equivalents else statuses[name]
            f.write(f"=== {name} [{tag}]\n{diff_of(work_dir, name)}\n\n")
    record_score(module, line)
    print(line)
    print(f"  survivors with diffs: {os.path.relpath(listing, REPO_ROOT)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("prepare", "report"))
    parser.add_argument("module")
    args = parser.parse_args(argv)
    try:
        (prepare if args.action == "prepare" else report)(args.module)
    except MutationSetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
