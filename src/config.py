"""Configuration: default_config.yaml + --config_path + --key=value overrides -> a typed Config.

Nothing here runs at import time; entry points call `load_config(sys.argv[1:])`.
"""
import difflib
import os
import sys

import yaml
from .errors import UserError

DEFAULT_CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "default_config.yaml")

# Release spellings accepted for compatibility -> the key we use.
ALIASES = {"match_thershold": "match_threshold", "nms_thershold": "nms_threshold"}

CHOICES = {
    "device_target": ("Ascend", "GPU", "CPU"),
    "context_mode": ("graph", "pynative"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "dataset": ("coco", "other"),
    "file_format": ("MINDIR", "AIR", "ONNX"),
    "backbone_depth": (18, 34, 50, 101),
    "amp_level": ("O0", "O1", "O2", "O3"),
    "loss_scale_type": ("static", "dynamic"),
}


class ConfigError(UserError):
    """A bad key or value in a config file or on the command line."""


class Config:
    """Attribute access to the options; `help` holds each key's help text."""

    def __init__(self, values, help_texts=None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "help", dict(help_texts or {}))

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(_unknown_key_message(key, self._values)) from None

    def __setattr__(self, key, value):
        self._values[key] = value

    def __contains__(self, key):
        return key in self._values

    def to_dict(self):
        return dict(self._values)

    def replace(self, **changes):
        """A copy with some values changed (validated like command-line overrides)."""
        values = dict(self._values)
        for key, value in changes.items():
            key = _canonical(key, values, "replace()")
            values[key] = coerce_value(key, value, values[key])
        cfg = Config(values, self.help)
        validate(cfg)
        return cfg

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def _unknown_key_message(key, known):
    close = difflib.get_close_matches(key, list(known) + list(ALIASES), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see default_config.yaml for the keys"
    return f"unknown config key '{key}'{hint}"


def _canonical(key, known, where):
    key = ALIASES.get(key, key)
    if key not in known:
        raise ConfigError(f"{where}: {_unknown_key_message(key, known)}")
    return key


def read_yaml(path):
    """Return (values, help) from a config file of one or two YAML documents."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not docs or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    help_texts = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {}
    return docs[0], help_texts


def _describe(default):
    if isinstance(default, list):
        plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
        inner = plural.get(type(default[0]), "values") if default else "values"
        return f"a list of {inner} like {default}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__)


def coerce_value(key, value, default):
    """Convert `value` (YAML-parsed or raw string) to the type of `default`, or raise ConfigError."""
    if default is None or value is None:
        return value
    bad = ConfigError(f"--{key}: expected {_describe(default)}, got {value!r}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if isinstance(default, int):
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(default, str):
        if isinstance(value, (dict, list)):
            raise bad
        return str(value)
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        if not default:
            return list(value)
        # Element type from the default; a list of numbers may mix ints and floats.
        proto = default[0]
        if isinstance(proto, (int, float)) and not isinstance(proto, bool):
            proto = float(proto) if any(isinstance(d, float) for d in default) else proto
        try:
            return [coerce_value(key, v, proto) for v in value]
        except ConfigError:
            raise bad from None
    return value


def _parse_cli(argv):
    """Split ['--a=1', '--b', '2', ...] into [(key, raw_string)]."""
    pairs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: options are --key=value")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, raw = arg[2:], argv[i + 1]
            i += 1
        else:
            key, raw = arg[2:], "true"  # a bare flag means true
        pairs.append((key.replace("-", "_"), raw))
        i += 1
    return pairs


def _parse_raw(raw):
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def format_help(cfg, prog="python script.py"):
    lines = [f"usage: {prog} [--config_path=FILE] [--key=value ...]", "", "options:"]
    for key, value in cfg.to_dict().items():
        text = cfg.help.get(key, "")
        shown = value if not (isinstance(value, list) and len(value) > 8) else f"[{len(value)} items]"
        lines.append(f"  --{key} (default: {shown})\n        {text}")
    return "\n".join(lines)


def load_config(argv=None, config_path=None, defaults=None):
    """Build the Config: file values, then `defaults` (per entry point), then command-line values."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pairs = _parse_cli(argv)
    path = config_path or DEFAULT_CONFIG_PATH
    for key, raw in pairs:
        if key == "config_path":
            path = raw
    base, help_texts = read_yaml(DEFAULT_CONFIG_PATH)
    values = dict(base)
    if os.path.abspath(path) != DEFAULT_CONFIG_PATH:
        override, extra_help = read_yaml(path)
        help_texts = {**help_texts, **extra_help}
        for key, value in override.items():
            key = _canonical(key, values, path)
            values[key] = coerce_value(key, value, base[key])
    for key, value in (defaults or {}).items():
        values[_canonical(key, values, "defaults")] = value
    if any(key in ("help", "h") for key, _ in pairs):
        print(format_help(Config(values, help_texts)))
        sys.exit(0)
    for key, raw in pairs:
        if key == "config_path":
            continue
        key = _canonical(key, values, "command line")
        values[key] = coerce_value(key, _parse_raw(raw), base[key])
    cfg = Config(values, help_texts)
    validate(cfg)
    return cfg


def validate(cfg):
    """Cross-key checks; raises ConfigError naming the key and what was expected."""
    for key, allowed in CHOICES.items():
        if key in cfg and getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key}: expected one of {list(allowed)}, got {getattr(cfg, key)!r}")
    if len(cfg.img_shape) != 2 or min(cfg.img_shape) <= 0:
        raise ConfigError(f"--img_shape: expected [H, W] of positive integers, got {cfg.img_shape}")
    largest = max(cfg.steps)
    if any(side % largest for side in cfg.img_shape):
        raise ConfigError(f"--img_shape: {cfg.img_shape} must be divisible by the largest step "
                          f"({largest}), e.g. [{cfg.img_shape[0] // largest * largest or largest}, ...]")
    if len(cfg.anchor_size) != len(cfg.steps):
        raise ConfigError(f"--anchor_size: expected {len(cfg.steps)} values (one per step), "
                          f"got {cfg.anchor_size}")
    if len(cfg.steps) != 5:
        raise ConfigError(f"--steps: NAS-FPN has 5 levels P3..P7, got {cfg.steps}")
    if cfg.num_classes < 2:
        raise ConfigError(f"--num_classes: expected >= 2 (background + classes), got {cfg.num_classes}")
    _check_optional_probability(cfg, "draw_score_threshold")
    derived = derived_sizes(cfg)
    for key in ("feature_size", "num_default", "num_retinanet_boxes"):
        given = getattr(cfg, key)
        if given is not None and given != derived[key]:
            raise ConfigError(f"--{key}: {given} does not match the value derived from img_shape, "
                              f"steps and anchors ({derived[key]}); leave it null")


def _check_optional_probability(cfg, key):
    """A key whose default is null takes any YAML value, so its type is checked here."""
    value = getattr(cfg, key) if key in cfg else None
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"--{key}: expected a number in [0, 1] or null, got {value!r}")


def derived_sizes(cfg):
    """The release's hard-coded sizes, computed from the options they depend on."""
    per_cell = len(cfg.aspect_ratios) * cfg.num_scales
    sizes = [[cfg.img_shape[0] // s, cfg.img_shape[1] // s] for s in cfg.steps]
    square = all(h == w for h, w in sizes)
    return {"feature_size": [h for h, _ in sizes] if square else sizes,
            "num_default": [per_cell] * len(cfg.steps),
            "num_retinanet_boxes": sum(h * w for h, w in sizes) * per_cell}
