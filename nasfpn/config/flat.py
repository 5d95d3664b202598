"""Configuration: default_config.yaml + --config_path + --key=value overrides -> a typed Config.

Nothing here runs at import time; entry points call `load_config(sys.argv[1:])`.
"""

import contextlib
import difflib
import os
import re
import sys

import yaml
from nasfpn.ops.boxes import anchors_per_cell
from nasfpn.core.errors import HelpRequested, UserError  # noqa: F401  (HelpRequested: raised by load_config)

# Shipped inside the package (an installed nasfpn finds it); the checkout's root default_config.yaml is
# a symbolic link to it, where the release layout has it.
DEFAULT_CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.yaml")

# Release spellings and names accepted for compatibility -> the key we use (same meaning).
ALIASES = {
    "match_thershold": "match_threshold",
    "nms_thershold": "nms_threshold",
    "workers": "num_parallel_workers",
    "nasfpn_out_channel": "fpn_channels",
    "nasfpn_stack_times": "fpn_stages",
}

# Release keys that describe the network's fixed wiring: null, or the value derived here.
DERIVED_RELEASE_KEYS = (
    "nasfpn_input_channels",
    "nasfpn_num_outs",
    "nasfpn_start_level",
    "nasfpn_end_level",
    "extras_out_channels",
)
# Backbone widths: C3..C5 have the stage widths of stages 2..4 times the block expansion
# (bottleneck blocks of ResNet-50/101 expand by 4, basic blocks of 18/34 by 1).
BACKBONE_STAGE_WIDTHS = (128, 256, 512)
BLOCK_EXPANSION = {18: 1, 34: 1, 50: 4, 101: 4}
DERIVED_FROM = {
    "nasfpn_input_channels": "backbone_depth",
    "nasfpn_num_outs": "steps",
    "nasfpn_start_level": "the network (C3 first)",
    "nasfpn_end_level": "the network (C5 last)",
    "extras_out_channels": "fpn_channels and steps",
}

# A key's allowed values sit next to it in default_config.yaml, as a trailing comment:
#   device_target: "CPU"  # choices: [Ascend, GPU, CPU]
CHOICES_COMMENT = re.compile(r"^(\w+)\s*:.*#\s*choices:\s*(\[.*\])\s*$")


class ConfigError(UserError):
    """A bad key or value in a config file or on the command line."""


# Keys whose values are local paths, as users type them: '~' and $VARS are expanded (expand_path).
# URLs (*_url: obs://, https://) are left as given.
PATH_KEY_SUFFIXES = ("_path", "_dir", "_root")
PATH_KEYS = ("pre_trained", "backbone_pretrained", "file_name", "calibration_data", "image")
UNSET_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def is_path_key(key: str) -> bool:
    return key.endswith(PATH_KEY_SUFFIXES) or key in PATH_KEYS


def expand_path(key: str, value):
    """`value` with a leading ~ / ~user and $VAR / ${VAR} expanded, as a shell would; ConfigError
    naming the key for a variable that is not set or a user that does not exist (never a folder
    literally named '~' or '$HOME')."""
    if not isinstance(value, str) or not value:
        return value
    expanded = os.path.expanduser(os.path.expandvars(value))
    unset = UNSET_VARIABLE.search(expanded)
    if unset:
        name = unset.group(1).strip("{}")
        raise ConfigError(
            f"--{key}={value}: the environment variable {name} is not set; set it or write the path out"
        )
    if expanded.startswith("~"):
        raise ConfigError(
            f"--{key}={value}: no user {expanded[1:].split(os.sep)[0]!r} for '~'; write the path out"
        )
    return expanded


def expand_paths(values: dict) -> dict:
    """`values` with every path-valued key expanded (expand_path)."""
    return {key: expand_path(key, value) if is_path_key(key) else value for key, value in values.items()}


class Config:
    """Attribute access to the options; `help` holds each key's help text, `choices` the allowed
    values of the keys that have a fixed set, `explicit_keys` the keys the user set (in a
    --config_path file or on the command line), so a model file's own values can fill the others."""

    def __init__(self, values, help_texts=None, choices=None, explicit_keys=()):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "help", dict(help_texts or {}))
        object.__setattr__(self, "choices", dict(choices or {}))
        object.__setattr__(self, "explicit_keys", frozenset(explicit_keys))

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

    def replace(self, explicit=True, **changes):
        """A copy with some values changed (validated like command-line overrides); they count as
        set by the user unless `explicit` is false (values taken from a model file)."""
        values = dict(self._values)
        changed = set()
        for key, value in changes.items():
            key = _canonical(key, values, "replace()")
            values[key] = coerce_value(key, value, values[key])
            values[key] = expand_path(key, values[key]) if is_path_key(key) else values[key]
            changed.add(key)
        cfg = Config(
            values, self.help, self.choices, self.explicit_keys | changed if explicit else self.explicit_keys
        )
        validate(cfg)
        return cfg

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def _unknown_key_message(key, known):
    close = difflib.get_close_matches(key, list(known) + list(ALIASES), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see default_config.yaml for the keys"
    return f"unknown config key '{key}'{hint}"


def release_form(key, value):
    """The release's per-level aspect_ratios ([[0.5, 1, 2]] * 5) -> ours ([0.5, 1, 2], the same for
    every level); other values unchanged."""
    if (
        key == "aspect_ratios"
        and isinstance(value, list)
        and value
        and all(isinstance(v, list) for v in value)
    ):
        if any(v != value[0] for v in value):
            raise ConfigError(
                f"--aspect_ratios: per-level ratios must be the same for every level "
                f"(anchors are shared), got {value}"
            )
        return value[0]
    return value


def _canonical(key, known, where):
    key = ALIASES.get(key, key)
    if key not in known:
        raise ConfigError(f"{where}: {_unknown_key_message(key, known)}")
    return key


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key, line, first_line):
        super().__init__(f"key {key!r} given twice")
        self.key, self.line, self.first_line = key, line, first_line


class ConfigTooLargeError(yaml.YAMLError):
    def __init__(self, message, line):
        super().__init__(message)
        self.message, self.line = message, line


# Values a config may hold once its aliases are expanded: default_config.yaml holds about a thousand;
# a few hundred bytes of nested aliases ('billion laughs') stand for billions.
MAX_CONFIG_VALUES = 100_000


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last value silently, so the first one a user edited may not be the one used), and that a
    document standing for more than MAX_CONFIG_VALUES values once its aliases (*name) are expanded,
    or an alias inside its own anchor, is refused while it is composed, before anything is built."""

    def compose_document(self):
        self.expanded_sizes = {}  # id(node) -> values it stands for, aliases expanded
        try:
            return super().compose_document()
        finally:
            self.expanded_sizes = {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self.expanded_sizes:  # not finished: an ancestor
                raise ConfigTooLargeError(
                    f"the alias *{event.anchor} is inside its own anchor &{event.anchor} (a value "
                    "that contains itself); remove it",
                    event.start_mark.line + 1,
                )
        node = super().compose_node(parent, index)
        sizes = self.expanded_sizes
        if id(node) not in sizes:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[id(node)] > MAX_CONFIG_VALUES:
                raise ConfigTooLargeError(
                    f"expands to more than {MAX_CONFIG_VALUES} values (aliases *name repeat what "
                    "their anchor &name holds); write the values out or use fewer aliases",
                    node.start_mark.line + 1,
                )
        return node

    def construct_mapping(self, node, deep=False):
        first_lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' entries may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                seen = key in first_lines
            except TypeError:  # an unhashable key: SafeLoader refuses it itself
                continue
            if seen:
                raise DuplicateKeyError(key, line, first_lines[key])
            first_lines[key] = line
        return super().construct_mapping(node, deep)


def _children(node):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return ()


def read_yaml(path):
    """Return (values, help) from a config file of one or two YAML documents."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]
        except DuplicateKeyError as exc:
            raise ConfigError(
                f"{path} line {exc.line}: key '{exc.key}' is given twice (first on line "
                f"{exc.first_line}); keep one of them"
            ) from None
        except ConfigTooLargeError as exc:
            raise ConfigError(f"{path} line {exc.line}: {exc.message}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
            raise ConfigError(
                f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); give a YAML config"
            ) from None
    if not docs or not isinstance(docs[0], dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    help_texts = docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else {}
    return docs[0], help_texts


def read_choices(path):
    """key -> allowed values, from `# choices: [...]` comments on the key lines of the first YAML
    document (values parsed as YAML, so [18, 34] are ints)."""
    choices = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("---"):
                break
            match = CHOICES_COMMENT.match(line)
            if match:
                try:
                    allowed = yaml.safe_load(match.group(2))
                except yaml.YAMLError as exc:
                    raise ConfigError(f"{path}: bad choices for {match.group(1)}: {exc}") from None
                choices[match.group(1)] = tuple(allowed)
    return choices


def _describe(default):
    if isinstance(default, list):
        plural = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
        inner = plural.get(type(default[0]), "values") if default else "values"
        return f"a list of {inner} like {default}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__
    )


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


def _parse_raw(raw, key="value"):
    try:
        return yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except ConfigTooLargeError as exc:
        raise ConfigError(f"--{key}: the value {exc.message}") from None
    except yaml.YAMLError:
        return raw


# (usage name, description) of the command being run, set by `nasfpn <command>` (nasfpn/cli.py),
# whose __main__ is the console script, not the command: see running_as.
_RUNNING_AS = []


@contextlib.contextmanager
def running_as(prog, description):
    """Inside it, --help names `prog` (e.g. 'nasfpn eval') and prints `description`."""
    _RUNNING_AS.append((prog, description.strip()))
    try:
        yield
    finally:
        _RUNNING_AS.pop()


def running_program():
    """(how the running entry point is invoked, its docstring) for --help."""
    if _RUNNING_AS:
        return _RUNNING_AS[-1]
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or sys.argv[0]
    return f"python {os.path.basename(path)}", (getattr(main, "__doc__", None) or "").strip()


def format_help(cfg, prog="python script.py", description=""):
    lines = [f"usage: {prog} [--config_path=FILE] [--key=value ...]", ""]
    if description:
        lines += [description, ""]
    lines.append("options:")
    for key, value in cfg.to_dict().items():
        text = cfg.help.get(key, "")
        shown = value if not (isinstance(value, list) and len(value) > 8) else f"[{len(value)} items]"
        allowed = cfg.choices.get(key)
        shown = f"{shown}; one of {', '.join(map(str, allowed))}" if allowed else shown
        lines.append(f"  --{key} (default: {shown})\n        {text}")
    return "\n".join(lines)


def parse_command_line(argv):
    """[(key, raw string)] of ['--a=1', '--b', '2', '--flag', ...] (keys as written)."""
    return _parse_cli(list(argv))


def wants_help(pairs):
    return any(key in ("help", "h") for key, _ in pairs)


def merge_config(pairs, config_path=None, defaults=None, command_line=True):
    """The Config's values, later sources winning: default_config.yaml, the --config_path file
    (from `pairs`, else `config_path`), `defaults` (per entry point), then the pairs themselves
    unless command_line is False. Keys are checked and values coerced, cross-key checks are
    validate's."""
    path = config_path or DEFAULT_CONFIG_PATH
    for key, raw in pairs:
        if key == "config_path":
            path = expand_path(key, raw)
    base, help_texts = read_yaml(DEFAULT_CONFIG_PATH)
    choices = read_choices(DEFAULT_CONFIG_PATH)
    values = dict(base)
    explicit = set()
    if os.path.realpath(path) != os.path.realpath(DEFAULT_CONFIG_PATH):  # the root link is the same file
        override, extra_help = read_yaml(path)
        help_texts = {**help_texts, **extra_help}
        for key, value in override.items():
            key = _canonical(key, values, path)
            values[key] = coerce_value(key, release_form(key, value), base[key])
            explicit.add(key)
    for key, value in (defaults or {}).items():
        values[_canonical(key, values, "defaults")] = value
    for key, raw in pairs if command_line else ():
        if key == "config_path":
            continue
        key = _canonical(key, values, "command line")
        values[key] = coerce_value(key, release_form(key, _parse_raw(raw, key)), base[key])
        explicit.add(key)
    return Config(expand_paths(values), help_texts, choices, explicit)


def load_config(argv=None, config_path=None, defaults=None):
    """The validated Config of a command line (default: sys.argv[1:]); HelpRequested for --help
    (its text shows the files' values, not the command line's)."""
    pairs = parse_command_line(sys.argv[1:] if argv is None else argv)
    if wants_help(pairs):
        cfg = merge_config(pairs, config_path, defaults, command_line=False)
        raise HelpRequested(format_help(cfg, *running_program()))
    cfg = merge_config(pairs, config_path, defaults)
    validate(cfg)
    return cfg


def validate(cfg):
    """Cross-key checks; raises ConfigError naming the key and what was expected."""
    for key, allowed in cfg.choices.items():
        if key in cfg and getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key}: expected one of {list(allowed)}, got {getattr(cfg, key)!r}")
    if len(cfg.img_shape) != 2 or min(cfg.img_shape) <= 0:
        raise ConfigError(f"--img_shape: expected [H, W] of positive integers, got {cfg.img_shape}")
    largest = max(cfg.steps)
    validate_scale_jitter(cfg, largest)
    if any(side % largest for side in cfg.img_shape):
        raise ConfigError(
            f"--img_shape: {cfg.img_shape} must be divisible by the largest step "
            f"({largest}), e.g. [{cfg.img_shape[0] // largest * largest or largest}, ...]"
        )
    if len(cfg.anchor_size) != len(cfg.steps):
        raise ConfigError(
            f"--anchor_size: expected {len(cfg.steps)} values (one per step), got {cfg.anchor_size}"
        )
    if len(cfg.steps) != 5:
        raise ConfigError(f"--steps: NAS-FPN has 5 levels P3..P7, got {cfg.steps}")
    if cfg.num_classes < 2:
        raise ConfigError(f"--num_classes: expected >= 2 (background + classes), got {cfg.num_classes}")
    validate_numeric_ranges(cfg)
    validate_release_keys(cfg)
    validate_step_schedule(cfg)
    validate_runtime_keys(cfg)
    validate_backbone_keys(cfg)
    validate_family_keys(cfg)
    _check_optional_probability(cfg, "draw_score_threshold")
    derived = derived_sizes(cfg)
    for key in ("feature_size", "num_default", "num_retinanet_boxes") + DERIVED_RELEASE_KEYS:
        given = getattr(cfg, key)
        if given is not None and given != derived[key]:
            raise ConfigError(
                f"--{key}: {given} does not match the value derived from "
                f"{DERIVED_FROM.get(key, 'img_shape, steps and anchors')} "
                f"({derived[key]}); leave it null"
            )


class Range:
    """An interval of allowed values for a numeric option (None: unbounded on that side)."""

    def __init__(self, low=None, high=None, low_open=False, high_open=False, note=""):
        self.low, self.high, self.low_open, self.high_open, self.note = low, high, low_open, high_open, note

    def contains(self, value):
        if value != value or value in (float("inf"), float("-inf")):  # NaN and infinities are in no range
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self):
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {self.low}"
        else:
            text = (
                f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
            )
        return text + (f" ({self.note})" if self.note else "")


POSITIVE, COUNT, NON_NEGATIVE = Range(0, low_open=True), Range(1), Range(0)
FRACTION_BELOW_ONE = Range(0, 1, high_open=True)
# Numeric options where a sign or range is meaningless.
NUMERIC_RANGES = {
    "lr": POSITIVE,
    "lr_init": NON_NEGATIVE,
    "lr_end_rate": Range(0, 1, note="a fraction of lr"),
    "batch_size": COUNT,
    "epoch_size": COUNT,
    "keep_checkpoint_max": COUNT,
    "save_checkpoint_epochs": COUNT,
    "log_interval": COUNT,
    "num_parallel_workers": COUNT,
    "momentum": FRACTION_BELOW_ONE,
    "bn_momentum": FRACTION_BELOW_ONE,
    "weight_decay": NON_NEGATIVE,
    "loss_scale": POSITIVE,
    "grad_clip_norm": Range(0, note="0 disables clipping"),
    "eval_interval": Range(0, note="0 disables"),
    "pre_trained_epoch_size": NON_NEGATIVE,
    "global_step": NON_NEGATIVE,
    "accumulate_steps": COUNT,
    "report_images": NON_NEGATIVE,
    "browse_images": COUNT,
    "browse_epoch": NON_NEGATIVE,
    "analysis_score_threshold": Range(0, 1),
    **{f"warmup_epochs{k}": NON_NEGATIVE for k in range(1, 6)},
    # the short recipe: scale jitter and the step schedule
    "scale_jitter_min": POSITIVE,
    "scale_jitter_max": POSITIVE,
    "min_box_size": NON_NEGATIVE,
    "warmup_ratio": Range(0, 1),
    "warmup_iters": NON_NEGATIVE,
    "fit_min_steps": NON_NEGATIVE,
    "lr_decay_factor": Range(0, 1, low_open=True),
    # ImageNet backbone: the ResNet has the stem + 4 stages at every depth
    "backbone_frozen_stages": Range(
        0, 4, note="0 none, k the stem and layer1..layer<k>; the ResNet has 4 stages"
    ),
    # weight averaging (nasfpn/training/ema.py)
    "ema_decay": FRACTION_BELOW_ONE,
    "ema_warmup_steps": Range(0, note="0 = no warm-up"),
    # export with detections
    "export_max_detections": COUNT,
    # post-processing and what infer / create_data write: scores and IoUs are in [0, 1] (NaN
    # kept nothing and exited 0), counts are at least one
    "score_threshold": Range(0, 1),
    "min_score": Range(0, 1),
    "nms_threshold": Range(0, 1),
    "max_boxes": COUNT,
    "num_shards": COUNT,
    "export_batch_size": COUNT,
    "calibration_images": COUNT,
}


def validate_numeric_ranges(cfg):
    """ConfigError naming the key, the value and the allowed range for a value outside it."""
    for key, allowed in NUMERIC_RANGES.items():
        value = getattr(cfg, key) if key in cfg else None
        if value is not None and not allowed.contains(value):
            raise ConfigError(f"--{key}: expected {allowed.describe()}, got {value!r}")


def validate_scale_jitter(cfg, largest_step):
    """The jitter's factor range, and its crop size (img_shape) a whole number of coarsest cells."""
    if not cfg.scale_jitter:
        return
    if cfg.scale_jitter_min > cfg.scale_jitter_max:
        raise ConfigError(
            f"--scale_jitter_min={cfg.scale_jitter_min} is above --scale_jitter_max="
            f"{cfg.scale_jitter_max}; expected min <= max"
        )
    if any(side % largest_step for side in cfg.img_shape):
        raise ConfigError(
            f"--img_shape: the scale-jitter crop size {cfg.img_shape} (--scale_jitter=true)"
            f" must be divisible by the largest step ({largest_step})"
        )


def validate_step_schedule(cfg):
    """lr_decay_epochs of the step schedule: increasing epoch numbers >= 1."""
    epochs = cfg.lr_decay_epochs
    if any(e < 1 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ConfigError(f"--lr_decay_epochs: expected increasing epoch numbers >= 1, got {epochs}")


def validate_release_keys(cfg):
    """Release keys whose meaning here needs a check against other keys."""
    if cfg.global_step and cfg.pre_trained_epoch_size:
        raise ConfigError(
            f"--global_step={cfg.global_step} and --pre_trained_epoch_size="
            f"{cfg.pre_trained_epoch_size} both set where the schedule starts; give one"
        )
    if cfg.checkpoint_url and not cfg.enable_modelarts:
        raise ConfigError(
            f"--checkpoint_url={cfg.checkpoint_url}: this is the release's ModelArts "
            "location of a checkpoint (copied to load_path with --enable_modelarts=True);"
            " the download URL of --hub is --hub_url"
        )


def validate_runtime_keys(cfg):
    """--precision other than f32 is OpenVINO's: refused with --runtime=onnxruntime."""
    if "runtime" in cfg and cfg.runtime == "onnxruntime" and cfg.precision != "f32":
        raise ConfigError(
            f"--precision={cfg.precision}: ONNX Runtime runs float32 models in f32; "
            "bf16 is an OpenVINO precision (--runtime=openvino)"
        )


def validate_backbone_keys(cfg):
    """pre_trained holds the whole detector, backbone included: with both, which backbone the run
    starts from would be a guess, so the user picks one."""
    if cfg.backbone_pretrained and cfg.pre_trained:
        raise ConfigError(
            f"--backbone_pretrained={cfg.backbone_pretrained} and --pre_trained="
            f"{cfg.pre_trained} both set: pre_trained is a whole detector, its backbone "
            "included; give one"
        )


def validate_family_keys(cfg):
    """The options of the paper's family: ranges and types (the spec itself is checked when the
    network is built, nasfpn/config/pyramid.py)."""
    if not 0 <= cfg.exit_stage <= cfg.fpn_stages:
        raise ConfigError(
            f"--exit_stage: expected 0 (all stages) to fpn_stages ({cfg.fpn_stages}), got {cfg.exit_stage}"
        )
    if not 0.35 <= cfg.backbone_width <= 1.4:
        raise ConfigError(
            f"--backbone_width: expected a width multiplier in [0.35, 1.4], got {cfg.backbone_width}"
        )
    if not 0.0 < cfg.dropblock_keep_prob <= 1.0:
        raise ConfigError(
            f"--dropblock_keep_prob: expected a number in (0, 1], got {cfg.dropblock_keep_prob}"
        )
    if cfg.dropblock_size < 1 or cfg.dropblock_size % 2 == 0:
        raise ConfigError(f"--dropblock_size: expected an odd number >= 1, got {cfg.dropblock_size}")
    if cfg.fpn_spec is not None and not isinstance(cfg.fpn_spec, (str, list)):
        raise ConfigError(
            f"--fpn_spec: expected null, a YAML file or a list of merge cells, got {cfg.fpn_spec!r}"
        )


def release_key_notes(cfg):
    """What training does with release keys that have no effect here (logged by train.py)."""
    notes = []
    if cfg.mode == "sink":
        notes.append(
            "mode=sink: this trainer runs its own step loop and feeds each batch from the "
            f"host on every device ({cfg.device_target} here); dataset sink mode is not used"
        )
    if cfg.finish_epoch:
        notes.append(
            f"finish_epoch={cfg.finish_epoch} is not used (nor was it by the release's "
            "train.py); epoch_size sets the length of training"
        )
    return notes


def _check_optional_probability(cfg, key):
    """A key whose default is null takes any YAML value, so its type is checked here."""
    value = getattr(cfg, key) if key in cfg else None
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"--{key}: expected a number in [0, 1] or null, got {value!r}")


def derived_sizes(cfg):
    """The release's hard-coded sizes and fixed NAS-FPN wiring, computed from the options they
    depend on."""
    per_cell = anchors_per_cell(cfg.aspect_ratios, cfg.num_scales)
    sizes = [[cfg.img_shape[0] // s, cfg.img_shape[1] // s] for s in cfg.steps]
    square = all(h == w for h, w in sizes)
    levels = len(cfg.steps)
    return {
        "feature_size": [h for h, _ in sizes] if square else sizes,
        "num_default": [per_cell] * levels,
        "num_retinanet_boxes": sum(h * w for h, w in sizes) * per_cell,
        "nasfpn_input_channels": [w * BLOCK_EXPANSION[cfg.backbone_depth] for w in BACKBONE_STAGE_WIDTHS],
        "nasfpn_num_outs": levels,
        "nasfpn_start_level": 0,  # C3 is the first backbone level used (the only choice)
        "nasfpn_end_level": -1,  # C5, the last, in the release's "-1 = last" notation
        "extras_out_channels": [cfg.fpn_channels] * levels,
    }
