"""Configuration: default_config.yaml + --config_path + --key=value overrides -> a typed Config.

Nothing here runs at import time; entry points call `load_config(sys.argv[1:])`.
"""

import contextlib
import difflib
import os
import re
import sys

import yaml
from nasfpn.config.errors import ConfigError
from nasfpn.config.sections import (
    AnchorConfig,
    AugmentationConfig,
    DataConfig,
    DeviceConfig,
    EvaluationConfig,
    ExportConfig,
    InferenceConfig,
    JobConfig,
    ModelConfig,
    PostprocessConfig,
    ScheduleConfig,
    TrainingConfig,
    check_across,
    SECTIONS,
)
from nasfpn.core.errors import HelpRequested  # noqa: F401  (raised by load_config)

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

# A key's allowed values sit next to it in default_config.yaml, as a trailing comment:
#   device_target: "CPU"  # choices: [Ascend, GPU, CPU]
CHOICES_COMMENT = re.compile(r"^(\w+)\s*:.*#\s*choices:\s*(\[.*\])\s*$")


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
    --config_path file or on the command line), so a model file's own values can fill the others.

    The parts of the library are built from its sections (nasfpn/config/sections.py): `cfg.model`,
    `cfg.anchors`, `cfg.data`, ... hold the same values as typed, frozen dataclasses."""

    def __init__(self, values, help_texts=None, choices=None, explicit_keys=()):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_sections", {})
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
        self._sections.clear()  # built again from the new values when next asked for

    def __contains__(self, key):
        return key in self._values

    def to_dict(self):
        return dict(self._values)

    def section(self, kind):
        """The section `kind` (a class of nasfpn/config/sections.py) of these values, built once."""
        if kind not in self._sections:
            self._sections[kind] = kind.from_flat(self._values)
        return self._sections[kind]

    @property
    def model(self) -> ModelConfig:
        return self.section(ModelConfig)

    @property
    def anchors(self) -> AnchorConfig:
        return self.section(AnchorConfig)

    @property
    def data(self) -> DataConfig:
        return self.section(DataConfig)

    @property
    def augmentation(self) -> AugmentationConfig:
        return self.section(AugmentationConfig)

    @property
    def training(self) -> TrainingConfig:
        return self.section(TrainingConfig)

    @property
    def schedule(self) -> ScheduleConfig:
        return self.section(ScheduleConfig)

    @property
    def evaluation(self) -> EvaluationConfig:
        return self.section(EvaluationConfig)

    @property
    def postprocess(self) -> PostprocessConfig:
        return self.section(PostprocessConfig)

    @property
    def export(self) -> ExportConfig:
        return self.section(ExportConfig)

    @property
    def inference(self) -> InferenceConfig:
        return self.section(InferenceConfig)

    @property
    def device(self) -> DeviceConfig:
        return self.section(DeviceConfig)

    @property
    def job(self) -> JobConfig:
        return self.section(JobConfig)

    def validate(self):
        """ConfigError naming the key and what was expected: a value outside its `# choices`,
        then each section's own rules (SECTIONS order), then the rules across sections."""
        for key, allowed in self.choices.items():
            if key in self and self._values[key] not in allowed:
                raise ConfigError(f"--{key}: expected one of {list(allowed)}, got {self._values[key]!r}")
        for kind in SECTIONS:
            self.section(kind).check()
        check_across(self.model, self.anchors, self.augmentation)

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
        cfg.validate()
        return cfg

    def help_text(self, prog="python script.py", description=""):
        """The --help text: usage, `description`, then every key with its value and help."""
        lines = [f"usage: {prog} [--config_path=FILE] [--key=value ...]", ""]
        if description:
            lines += [description, ""]
        lines.append("options:")
        for key, value in self._values.items():
            text = self.help.get(key, "")
            shown = value if not (isinstance(value, list) and len(value) > 8) else f"[{len(value)} items]"
            allowed = self.choices.get(key)
            shown = f"{shown}; one of {', '.join(map(str, allowed))}" if allowed else shown
            lines.append(f"  --{key} (default: {shown})\n        {text}")
        return "\n".join(lines)

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


def parse_command_line(argv):
    """[(key, raw string)] of ['--a=1', '--b', '2', '--flag', ...] (keys as written)."""
    return _parse_cli(list(argv))


def wants_help(pairs):
    return any(key in ("help", "h") for key, _ in pairs)


def merge_config(pairs, config_path=None, defaults=None, command_line=True):
    """The Config's values, later sources winning: default_config.yaml, the --config_path file
    (from `pairs`, else `config_path`), `defaults` (per entry point), then the pairs themselves
    unless command_line is False. Keys are checked and values coerced, cross-key checks are
    Config.validate's."""
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
        raise HelpRequested(cfg.help_text(*running_program()))
    cfg = merge_config(pairs, config_path, defaults)
    cfg.validate()
    return cfg
