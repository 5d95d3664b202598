"""The error of a bad key or value, shared by the loader (flat.py) and the sections (sections.py)."""

from nasfpn.core.errors import UserError


class ConfigError(UserError):
    """A bad key or value in a config file or on the command line."""
