"""NAS-FPN (RetinaNet) on MindSpore.

    from nasfpn import Detector, evaluate, export   # the Python API (nasfpn/api.py)

The API's names are imported on first use (PEP 562), so `import nasfpn.core.errors` or the
`nasfpn --help` command does not import MindSpore.
"""

from typing import Any, List

__version__ = "1.0.0"
__all__ = ["Detections", "Detector", "evaluate", "export", "__version__"]
API_NAMES = ("Detections", "Detector", "evaluate", "export")


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from nasfpn import api

        return getattr(api, name)
    raise AttributeError(f"module 'nasfpn' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(list(globals()) + list(API_NAMES))
