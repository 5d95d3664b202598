"""The project's error policy, shared by every entry point (see nasfpn/core/exits.py).

- `UserError`: the user can fix it (a bad file, key, value, or a model that does not match the
  input). The entry point prints one line naming the file/key/value and what was expected, and
  exits with status 2.
- `RunError`: the run itself failed (non-finite loss, no device, a launcher problem). One line,
  exit status 1.
- Anything else is a bug in this project and keeps its traceback.

`UserError` derives from ValueError so that library-style callers catching ValueError keep working.
"""


class UserError(ValueError):
    """Bad input: one line on stderr, exit status 2."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class UserFileExistsError(UserError, FileExistsError):
    """An output the user named already exists and was not to be replaced."""


class RunError(RuntimeError):
    """The run failed for a reason that is not a bug here: one line on stderr, exit status 1."""


class DeviceError(RunError):
    """The requested device (--device_target/--device_id) is not available on this machine."""


class TrainingError(RunError):
    """Training cannot continue (non-finite loss or state, a checkpoint that cannot be written)."""


class HelpRequested(Exception):
    """--help was given: `text` is the help; the entry point prints it and exits 0 (nasfpn/core/exits.py)."""

    def __init__(self, text):
        super().__init__("--help")
        self.text = text
