"""How the top-level entry points end: a user error is one line on stderr and exit code 2, a run
that failed (non-finite loss, device or launcher problems) exit code 1; no traceback for either."""
import sys

from .config import ConfigError

# Bad arguments, paths or files. ConfigError, CheckpointError, ChecksumError are ValueErrors;
# missing files and failed downloads are OSErrors.
USER_ERRORS = (ConfigError, ValueError, OSError)


def run_entry_point(main):
    try:
        return main()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
