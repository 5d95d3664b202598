"""Helpers shared by the benchmarks: timing, markdown tables, the machine, and the writer of
bench/RESULTS.md (each benchmark replaces its own `## ` section there, with date and machine)."""

import datetime
import os
import platform
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_PATH = os.path.join(BENCH_DIR, "RESULTS.md")
RESULTS_TITLE = "# Benchmarks"
RESULTS_INTRO = (
    "Written by the benchmarks themselves: each `bench/bench_*.py` replaces its own section below\n"
    "(`bash bench/run_all.sh` runs them all). Every section says when, on which machine and by which\n"
    "command it was measured; figures from different sections may come from different machines.\n"
    "CPU timings depend on the machine's other load: compare rows of one table, not tables."
)


def timeit(fn, repeat=5, warmup=1):
    """(best, median) seconds of `fn()` over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


def cpu_model(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's model name from /proc/cpuinfo (else what platform knows)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(**extra):
    """'<CPU model>, <n> cores, Python x.y.z, MindSpore v[, name version ...]' for this process."""
    import mindspore

    parts = [
        cpu_model(),
        f"{os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"MindSpore {mindspore.__version__}",
    ]
    parts += [f"{name} {value}" for name, value in extra.items()]
    return ", ".join(parts)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_command(script, argv):
    """The command line that reproduces this run, as a user types it."""
    rel = os.path.relpath(os.path.abspath(script), os.path.dirname(BENCH_DIR))
    return " ".join(["python", rel, *argv])


def format_section(name, body, machine, command, date):
    """One `## name` section: the header line (date, machine, command), then `body` verbatim."""
    header = f"Measured {date} on {machine} by `{command}`."
    return f"## {name}\n\n{header}\n\n{body.strip()}\n"


def split_sections(text):
    """(preamble, [(name, section text)]) of a results file; a section runs from its `## ` line
    to the next one."""
    preamble, sections = [], []
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            sections.append([line[3:].strip(), [line]])
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), [(name, "".join(lines)) for name, lines in sections]


def write_results_section(name, body, machine, command, date=None, path=RESULTS_PATH):
    """Replace the section `name` of the results file with a fresh one (appended when new); the
    other sections stay byte for byte. The file is replaced by a rename, so a reader or a crash
    sees either the old file or the new one. Returns the path."""
    from nasfpn.core.atomic import atomic_path

    if "\n" in name or not name.strip():
        raise ValueError(f"section name must be one non-empty line, got {name!r}")
    if any(line.startswith("## ") for line in body.splitlines()):
        raise ValueError(
            f"the body of section {name!r} has a '## ' line, which would start another "
            "section; use '### ' for headings inside it"
        )
    date = date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    fresh = format_section(name, body, machine, command, date)
    try:
        with open(path, encoding="utf-8") as f:
            preamble, sections = split_sections(f.read())
    except FileNotFoundError:
        preamble, sections = f"{RESULTS_TITLE}\n\n{RESULTS_INTRO}\n\n", []
    names = [n for n, _ in sections]
    if name in names:
        sections[names.index(name)] = (name, fresh)
    else:
        sections.append((name, fresh))
    # One blank line between sections, whatever the file had; the sections' text is kept.
    text = preamble.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for _, s in sections)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return path


HELP_FLAGS = ("-h", "--help")


def run_bench(main, doc, argv=None):
    """The entry of a benchmark script: -h / --help prints its usage (`doc`, the module's
    docstring) and exits 0 before any work; otherwise `main(argv)` (argv: sys.argv[1:]) runs under
    the project's error policy and Ctrl-C rule (nasfpn/core/exits.py: one line, exit 2 / 1 / 130)."""
    import sys

    from nasfpn.core.exits import run_entry_point

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in HELP_FLAGS for arg in argv):
        print(doc.strip())
        sys.exit(0)
    run_entry_point(lambda: main(argv))


def results_path_from_env():
    """Where record() writes: $BENCH_RESULTS if set ('-': print only), else bench/RESULTS.md."""
    return os.environ.get("BENCH_RESULTS") or RESULTS_PATH


def record(name, body, script, argv, **machine_extra):
    """Print a benchmark's tables and write them as its section of the results file (see
    results_path_from_env); `machine_extra` adds versions to the machine line."""
    print(f"\n{body.strip()}\n")
    path = results_path_from_env()
    if path == "-":
        return
    write_results_section(name, body, machine_line(**machine_extra), bench_command(script, argv), path=path)
    print(f"[bench] wrote section '{name}' of {os.path.relpath(path)}")
