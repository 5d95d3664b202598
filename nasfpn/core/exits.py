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
    sys.exit(exit_status(result))
