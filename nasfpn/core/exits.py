"""How the top-level entry points end (the error policy of nasfpn/core/errors.py).

Exit status:
  0  finished, every input processed
  1  the run failed (`RunError`: non-finite loss, no device, launcher problem): one line on stderr
  2  bad input (`UserError`: a file, key, value or model the user can fix): one line on stderr
  3  finished, but some inputs were skipped (infer.py, infer_310_twin.py, postprocess.py:
     undecodable or truncated images);
     the outputs are complete for the others and each skipped file was reported
  4  stopped by SIGTERM / SIGINT (train.py): the current step was finished and checkpointed, one
     line says which file; --resume=True continues exactly from there (a distinct status, not
     128 + signal, so a job script can tell "stopped and saved" from "killed")
  130 / 143  stopped by SIGINT / SIGTERM (every other entry point, and train.py before or after
     its training loop): one line says what is complete; temporaries were removed
     (nasfpn/core/interrupts.py)
Any other exception is a bug and keeps its traceback (Python's exit status 1).
"""

import errno
import resource
import sys

from nasfpn.core.errors import HelpRequested, RunError, UserError
from nasfpn.core.interrupts import Interrupted, stop_line, stop_on_signals, swallowed

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_SKIPPED_INPUTS = 3
EXIT_INTERRUPTED = 4


def exit_status_ok(result):
    return EXIT_OK


# Messages of the allocation failures MindSpore, ONNX Runtime and the C library report as
# RuntimeError / OSError (a thread that cannot get its stack, an arena that cannot grow).
OUT_OF_MEMORY_SIGNS = (
    "bad_alloc",
    "Resource temporarily unavailable",
    "Cannot allocate memory",
    "out of memory",
    "failed to map segment",  # the loader's ImportError for a shared library that does not fit
)
# MindSpore reserves far more address space than it touches (thread stacks, its memory pool):
# under an address-space limit (ulimit -v) below this it may abort in C++, beyond any message.
ADDRESS_SPACE_WARNING_BYTES = 8 * 2**30


def address_space_limit():
    """The soft RLIMIT_AS in bytes (ulimit -v), or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def memory_limit_note():
    limit = address_space_limit()
    return f"; this process has an address-space limit of {limit // 2**20} MB (ulimit -v)" if limit else ""


def warn_about_a_low_address_space_limit():
    limit = address_space_limit()
    if limit is not None and limit < ADDRESS_SPACE_WARNING_BYTES:
        print(
            f"warning: the address-space limit (ulimit -v) is {limit // 2**20} MB; MindSpore reserves "
            "much more address space than it uses and may fail or abort (std::bad_alloc) under it: "
            "limit memory with a cgroup (e.g. systemd-run -p MemoryMax=...) instead",
            file=sys.stderr,
        )


def out_of_memory(exc):
    """Whether `exc` reports a failed allocation (MemoryError, or a library's RuntimeError / OSError
    saying so): then the run failed for want of memory, not for a bug here."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOMEM
    return isinstance(exc, (RuntimeError, ImportError)) and any(
        sign in str(exc) for sign in OUT_OF_MEMORY_SIGNS
    )


def close_progress_bars():
    """Close the tqdm bars an interrupted loop left open, so that the stop line starts a line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def run_entry_point(main, exit_status=exit_status_ok):
    """Run `main()` and exit: `exit_status(result)` when it returns, 0 after printing the help
    for --help (nasfpn/config/flat.py:HelpRequested), 2 / 1 for a UserError /
    RunError (`error: <message>` on stderr; the messages are ours, one line unless they carry a
    summary), 130 / 143 when SIGINT / SIGTERM stopped it (nasfpn/core/interrupts.py: one line
    `stopped by ...` saying what is complete). Other exceptions propagate with their traceback."""
    warn_about_a_low_address_space_limit()
    try:
        with stop_on_signals():
            result = main()
            if swallowed():  # a library caught the signal's exception and went on: stop now
                raise swallowed()
    except Interrupted as exc:
        close_progress_bars()
        print(stop_line(exc), file=sys.stderr)
        sys.exit(exc.exit_status)
    except HelpRequested as request:
        print(request.text)
        sys.exit(EXIT_OK)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
    except (MemoryError, RuntimeError, OSError, ImportError) as exc:
        if not out_of_memory(exc):
            raise
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        print(
            f"error: out of memory ({exc.__class__.__name__}: {first_line.strip()[:200]}){memory_limit_note()}; "
            "free memory, raise the limit or use a smaller --batch_size / --img_shape",
            file=sys.stderr,
        )
        sys.exit(EXIT_RUN_FAILED)
    sys.exit(exit_status(result))
