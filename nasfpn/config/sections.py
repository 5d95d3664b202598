"""The configuration's typed sections: each part of the library is built from its own section.

The file and command-line format stay flat (default_config.yaml, --key=value; nasfpn/config/flat.py).
A loaded Config hands out one frozen dataclass per section (`cfg.model`, `cfg.anchors`, ...: SECTIONS)
whose fields are that section's flat keys, under their flat names. Every key of default_config.yaml
belongs to exactly one section (tests/test_config_sections.py checks it).

Each section checks its own values (`check`: allowed ranges and the rules between its own keys);
the few rules that tie sections together (the input size against the strides, the release's
derived sizes) are `check_across`. Checks that only some runs need (synchronised BatchNorm for
training, the model choice of eval/infer) are methods of their section, called where they apply.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Optional

from nasfpn.config.errors import ConfigError
from nasfpn.ops.boxes import AnchorSpec, anchors_per_cell


class Range:
    """An interval of allowed values for a numeric option (None: unbounded on that side)."""

    def __init__(self, low=None, high=None, low_open=False, high_open=False, note=""):
        self.low, self.high, self.low_open, self.high_open, self.note = low, high, low_open, high_open, note

    def contains(self, value) -> bool:
        if value != value or value in (float("inf"), float("-inf")):  # NaN and infinities are in no range
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {self.low}"
        else:
            text = (
                f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
            )
        return text + (f" ({self.note})" if self.note else "")


POSITIVE, COUNT, NON_NEGATIVE = Range(0, low_open=True), Range(1), Range(0)
FRACTION_BELOW_ONE = Range(0, 1, high_open=True)


@dataclass(frozen=True)
class Section:
    """A section's fields are its flat keys. RANGES: the numeric keys where a sign or range is
    meaningless, and their allowed interval."""

    NAME: ClassVar[str] = ""
    RANGES: ClassVar[dict] = {}

    @classmethod
    def keys(cls) -> tuple:
        return tuple(field.name for field in fields(cls))

    @classmethod
    def from_flat(cls, values):
        """The section of a flat mapping of key -> value (a Config's values)."""
        return cls(**{key: values[key] for key in cls.keys()})

    def check(self) -> None:
        """ConfigError naming the key for a value this section does not allow."""
        self.check_ranges()

    def check_ranges(self) -> None:
        for key, allowed in self.RANGES.items():
            value = getattr(self, key)
            if value is not None and not allowed.contains(value):
                raise ConfigError(f"--{key}: expected {allowed.describe()}, got {value!r}")


# Backbone widths: C3..C5 have the stage widths of stages 2..4 times the block expansion
# (bottleneck blocks of ResNet-50/101 expand by 4, basic blocks of 18/34 by 1).
BACKBONE_STAGE_WIDTHS = (128, 256, 512)
BLOCK_EXPANSION = {18: 1, 34: 1, 50: 4, 101: 4}
NUM_LEVELS = 5  # NAS-FPN's pyramid P3..P7


@dataclass(frozen=True)
class ModelConfig(Section):
    """The network (nasfpn/model): its input size, classes, backbone, NAS-FPN neck and head. The
    nasfpn_* and extras_out_channels keys are the release's fixed wiring: null or the derived value."""

    NAME = "model"
    RANGES = {"bn_momentum": FRACTION_BELOW_ONE}

    img_shape: list
    num_classes: int
    coco_classes: list
    backbone_depth: int
    fpn_channels: int
    fpn_stages: int
    head_convs: int
    cls_prior_probability: float
    bn_momentum: float
    nasfpn_input_channels: Optional[list]
    nasfpn_num_outs: Optional[int]
    nasfpn_start_level: Optional[int]
    nasfpn_end_level: Optional[int]
    extras_out_channels: Optional[list]
    # the paper's family (docs/family.md): all off for the release network
    backbone: str
    backbone_width: float
    fpn_spec: object  # null, a YAML file, or the cells inline (nasfpn/config/pyramid.py)
    fpn_combine: str
    activation: str
    separable_conv: bool
    dropblock_keep_prob: float
    dropblock_size: int
    deep_supervision: bool
    exit_stage: int

    def check(self) -> None:
        if len(self.img_shape) != 2 or min(self.img_shape) <= 0:
            raise ConfigError(f"--img_shape: expected [H, W] of positive integers, got {self.img_shape}")
        if self.num_classes < 2:
            raise ConfigError(f"--num_classes: expected >= 2 (background + classes), got {self.num_classes}")
        self.check_ranges()
        self.check_family()

    def check_family(self) -> None:
        """The options of the paper's family: ranges and types (the spec itself is checked when the
        network is built, nasfpn/config/pyramid.py)."""
        if not 0 <= self.exit_stage <= self.fpn_stages:
            raise ConfigError(
                f"--exit_stage: expected 0 (all stages) to fpn_stages ({self.fpn_stages}), got {self.exit_stage}"
            )
        if not 0.35 <= self.backbone_width <= 1.4:
            raise ConfigError(
                f"--backbone_width: expected a width multiplier in [0.35, 1.4], got {self.backbone_width}"
            )
        if not 0.0 < self.dropblock_keep_prob <= 1.0:
            raise ConfigError(
                f"--dropblock_keep_prob: expected a number in (0, 1], got {self.dropblock_keep_prob}"
            )
        if self.dropblock_size < 1 or self.dropblock_size % 2 == 0:
            raise ConfigError(f"--dropblock_size: expected an odd number >= 1, got {self.dropblock_size}")
        if self.fpn_spec is not None and not isinstance(self.fpn_spec, (str, list)):
            raise ConfigError(
                f"--fpn_spec: expected null, a YAML file or a list of merge cells, got {self.fpn_spec!r}"
            )

    @property
    def dropblock(self):
        """(keep_prob, block_size), or None when DropBlock is off."""
        return (self.dropblock_keep_prob, self.dropblock_size) if self.dropblock_keep_prob < 1.0 else None

    def check_exit_stage(self, source: str) -> None:
        """ConfigError for an early exit of a model whose early exits were never trained."""
        if self.exit_stage and not self.deep_supervision:
            raise ConfigError(
                f"--exit_stage={self.exit_stage}: {source} was not trained with deep_supervision, so its "
                "early exits are untrained (only its last stage learned to detect); leave --exit_stage "
                "out, or train with --deep_supervision=True"
            )

    def class_names(self) -> Optional[list]:
        """coco_classes when it names num_classes classes (background first), else None."""
        return list(self.coco_classes) if len(self.coco_classes) == self.num_classes else None


@dataclass(frozen=True)
class AnchorConfig(Section):
    """The anchors on the pyramid levels, how they are matched to ground truth and the box
    coding (nasfpn/ops/boxes.py). feature_size, num_default, num_retinanet_boxes: the release's
    hard-coded sizes, null or the derived value."""

    NAME = "anchors"

    steps: list
    anchor_size: list
    aspect_ratios: list
    num_scales: int
    prior_scaling: list
    match_threshold: float
    feature_size: Optional[list]
    num_default: Optional[list]
    num_retinanet_boxes: Optional[int]

    def check(self) -> None:
        if len(self.anchor_size) != len(self.steps):
            raise ConfigError(
                f"--anchor_size: expected {len(self.steps)} values (one per step), got {self.anchor_size}"
            )
        if len(self.steps) != NUM_LEVELS:
            raise ConfigError(f"--steps: NAS-FPN has 5 levels P3..P7, got {self.steps}")
        self.check_ranges()

    @property
    def per_cell(self) -> int:
        """Anchors at each cell of each level."""
        return anchors_per_cell(self.aspect_ratios, self.num_scales)

    @property
    def largest_step(self) -> int:
        return max(self.steps)

    def spec(self, img_shape) -> AnchorSpec:
        """The anchor set of these options on an input of `img_shape` (H, W)."""
        return AnchorSpec(
            img_shape=tuple(img_shape),
            steps=tuple(self.steps),
            anchor_sizes=tuple(self.anchor_size),
            aspect_ratios=tuple(self.aspect_ratios),
            num_scales=int(self.num_scales),
        )


@dataclass(frozen=True)
class DataConfig(Section):
    """Where the data is and how it is converted and read (nasfpn/data: create_data.py, the
    MindRecord pipelines); seed keys the shuffle, the augmentation and the initialisation."""

    NAME = "data"
    RANGES = {"num_parallel_workers": COUNT, "num_shards": COUNT}

    dataset: str
    coco_root: str
    train_data_type: str
    val_data_type: str
    instances_set: str
    mindrecord_dir: str
    image_dir: str
    train_image_dir: str
    val_image_dir: str
    anno_path: str
    empty_images: str
    allow_outside_image_dir: bool
    num_parallel_workers: int
    seed: int
    create_dataset: str
    dataset_root: str
    val_fraction: float
    prefix: str
    is_training: bool
    num_shards: int


@dataclass(frozen=True)
class AugmentationConfig(Section):
    """The training augmentation (nasfpn/data/transforms.py) and the browser that draws it
    (nasfpn/data/browse.py)."""

    NAME = "augmentation"
    RANGES = {
        "scale_jitter_min": POSITIVE,
        "scale_jitter_max": POSITIVE,
        "min_box_size": NON_NEGATIVE,
        "browse_images": COUNT,
        "browse_epoch": NON_NEGATIVE,
    }

    train_random_crop: bool
    scale_jitter: bool
    scale_jitter_min: float
    scale_jitter_max: float
    min_box_size: float
    browse_from: str
    browse_images: int
    browse_epoch: int
    browse_output_dir: str

    def check(self) -> None:
        if self.scale_jitter and self.scale_jitter_min > self.scale_jitter_max:
            raise ConfigError(
                f"--scale_jitter_min={self.scale_jitter_min} is above --scale_jitter_max="
                f"{self.scale_jitter_max}; expected min <= max"
            )
        self.check_ranges()


# MindSpore documents nn.SyncBatchNorm for Ascend only (its GPU branch is not a supported platform).
SYNC_BN_PLATFORMS = ("Ascend",)


@dataclass(frozen=True)
class TrainingConfig(Section):
    """A training run (nasfpn/training): batch, optimizer, loss, checkpoints, starting point,
    precision and memory, weight averaging."""

    NAME = "training"
    RANGES = {
        "batch_size": COUNT,
        "keep_checkpoint_max": COUNT,
        "save_checkpoint_epochs": COUNT,
        "log_interval": COUNT,
        "momentum": FRACTION_BELOW_ONE,
        "weight_decay": NON_NEGATIVE,
        "loss_scale": POSITIVE,
        "grad_clip_norm": Range(0, note="0 disables clipping"),
        "eval_interval": Range(0, note="0 disables"),
        "accumulate_steps": COUNT,
        # ImageNet backbone: the ResNet has the stem + 4 stages at every depth
        "backbone_frozen_stages": Range(
            0, 4, note="0 none, k the stem and layer1..layer<k>; the ResNet has 4 stages"
        ),
        # weight averaging (nasfpn/training/ema.py)
        "ema_decay": FRACTION_BELOW_ONE,
        "ema_warmup_steps": Range(0, note="0 = no warm-up"),
    }

    batch_size: int
    momentum: float
    weight_decay: float
    loss_scale: float
    loss_scale_type: str
    grad_clip_norm: float
    accumulate_steps: int
    gamma: float
    alpha: float
    normalize_positives_over_devices: bool
    distribute: bool
    sync_bn: bool
    amp_level: str
    recompute: str
    pre_trained: str
    filter_weight: bool
    keep_class_rows: bool
    backbone_pretrained: str
    backbone_frozen_stages: int
    resume: bool
    save_checkpoint: bool
    save_checkpoint_epochs: int
    keep_checkpoint_max: int
    save_checkpoint_path: str
    log_interval: int
    eval_interval: int
    finish_epoch: int
    ema: bool
    ema_decay: float
    ema_warmup_steps: int

    def check(self) -> None:
        # pre_trained holds the whole detector, backbone included: with both, which backbone the
        # run starts from would be a guess, so the user picks one.
        if self.backbone_pretrained and self.pre_trained:
            raise ConfigError(
                f"--backbone_pretrained={self.backbone_pretrained} and --pre_trained="
                f"{self.pre_trained} both set: pre_trained is a whole detector, its backbone "
                "included; give one"
            )
        self.check_ranges()

    def check_sync_bn(self, device_target: str) -> None:
        """ConfigError for sync_bn on a platform where MindSpore has no synchronised BatchNorm
        (a training check: evaluation and export use plain BatchNorm either way)."""
        if self.sync_bn and device_target not in SYNC_BN_PLATFORMS:
            raise ConfigError(
                f"--sync_bn=true: synchronised BatchNorm (nn.SyncBatchNorm) runs on "
                f"{', '.join(SYNC_BN_PLATFORMS)} only, not on device_target "
                f"{device_target}; set --sync_bn=false"
            )


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """The learning-rate schedule over the run's epoch_size epochs and where it starts
    (nasfpn/training/lr_schedule.py)."""

    NAME = "schedule"
    RANGES = {
        "lr": POSITIVE,
        "lr_init": NON_NEGATIVE,
        "lr_end_rate": Range(0, 1, note="a fraction of lr"),
        "epoch_size": COUNT,
        "pre_trained_epoch_size": NON_NEGATIVE,
        "global_step": NON_NEGATIVE,
        **{f"warmup_epochs{k}": NON_NEGATIVE for k in range(1, 6)},
        # the short recipe's step schedule
        "warmup_ratio": Range(0, 1),
        "warmup_iters": NON_NEGATIVE,
        "fit_min_steps": NON_NEGATIVE,
        "lr_decay_factor": Range(0, 1, low_open=True),
    }

    epoch_size: int
    lr_schedule: str
    lr: float
    lr_scale_by_batch: bool
    lr_init: float
    lr_end_rate: float
    warmup_epochs: int
    warmup_epochs1: int
    warmup_epochs2: int
    warmup_epochs3: int
    warmup_epochs4: int
    warmup_epochs5: int
    warmup_ratio: float
    warmup_iters: int
    lr_decay_epochs: list
    lr_decay_factor: float
    fit_schedule_to_run: bool
    fit_min_steps: int
    global_step: int
    pre_trained_epoch_size: int

    def check(self) -> None:
        if self.global_step and self.pre_trained_epoch_size:
            raise ConfigError(
                f"--global_step={self.global_step} and --pre_trained_epoch_size="
                f"{self.pre_trained_epoch_size} both set where the schedule starts; give one"
            )
        epochs = self.lr_decay_epochs
        if any(e < 1 for e in epochs) or any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ConfigError(f"--lr_decay_epochs: expected increasing epoch numbers >= 1, got {epochs}")
        self.check_ranges()

    @property
    def release_warmup_epochs(self) -> list:
        """The lengths of the release schedule's five warm-up phases (warmup_epochs1..5)."""
        return [
            self.warmup_epochs1,
            self.warmup_epochs2,
            self.warmup_epochs3,
            self.warmup_epochs4,
            self.warmup_epochs5,
        ]


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """eval.py's outputs: metrics, the error analysis and its report (nasfpn/evaluation)."""

    NAME = "evaluation"
    RANGES = {"report_images": NON_NEGATIVE, "analysis_score_threshold": Range(0, 1)}

    eval_output_dir: str
    eval_exits: bool
    report_images: int
    analysis_score_threshold: float


@dataclass(frozen=True)
class PostprocessConfig(Section):
    """Boxes and scores -> detections: score threshold, per-class NMS, per-class cap
    (nasfpn/inference/detections.py; inside a detections graph, nasfpn/deploy)."""

    NAME = "postprocess"
    # scores and IoUs are in [0, 1] (NaN kept nothing and exited 0), counts are at least one
    RANGES = {"min_score": Range(0, 1), "nms_threshold": Range(0, 1), "max_boxes": COUNT}

    min_score: float
    nms_threshold: float
    max_boxes: int


@dataclass(frozen=True)
class ExportConfig(Section):
    """export.py: the exported file, its batch, INT8 quantization, a detections graph (nasfpn/deploy)."""

    NAME = "export"
    RANGES = {"export_max_detections": COUNT, "export_batch_size": COUNT, "calibration_images": COUNT}

    file_name: str
    file_format: str
    export_batch_size: int
    quantize: str
    calibration_data: str
    calibration_images: int
    export_detections: bool
    export_max_detections: int


MODEL_OPTIONS = ("checkpoint_path", "model_path", "hub")


@dataclass(frozen=True)
class InferenceConfig(Section):
    """The model a run opens (a checkpoint, an exported file, the published checkpoint) and how it
    runs, test-time augmentation, and the inputs and outputs of infer.py and the 310 twin
    (nasfpn/inference)."""

    NAME = "inference"
    RANGES = {"score_threshold": Range(0, 1)}

    checkpoint_path: str
    checkpoint_sha256: str
    use_ema: bool
    model_path: str
    runtime: str
    precision: str
    num_threads: int
    hub: bool
    hub_url: str
    hub_cache_dir: str
    download_timeout: float
    tta_flip: bool
    tta_scales: list
    image: str
    output_dir: str
    score_threshold: float
    draw_score_threshold: Optional[float]
    dataset_path: str
    result_path: str

    def check(self) -> None:
        if self.runtime == "onnxruntime" and self.precision != "f32":
            raise ConfigError(
                f"--precision={self.precision}: ONNX Runtime runs float32 models in f32; "
                "bf16 is an OpenVINO precision (--runtime=openvino)"
            )
        # null by default, so YAML lets any value through: its type is checked here
        value = self.draw_score_threshold
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1
        ):
            raise ConfigError(f"--draw_score_threshold: expected a number in [0, 1] or null, got {value!r}")
        self.check_ranges()

    @property
    def model_file(self) -> str:
        """The model file given (model_path, else checkpoint_path; '' for none or --hub)."""
        return self.model_path or self.checkpoint_path

    def check_model_choice(self, exported_only: bool = False) -> None:
        """ConfigError unless the model is named in a way the entry point accepts: eval.py and
        infer.py take exactly one of checkpoint_path, model_path, hub; the 310 twin (exported_only)
        an exported model_path."""
        if exported_only:
            if not self.model_path:
                raise ConfigError("--model_path: expected an exported .mindir, .onnx or OpenVINO .xml file")
            return
        chosen = [option for option in MODEL_OPTIONS if getattr(self, option)]
        if len(chosen) != 1:
            raise ConfigError(
                "give exactly one of --checkpoint_path (a .ckpt), --model_path (an exported "
                ".mindir, .onnx or OpenVINO .xml) or --hub (the published checkpoint); got "
                f"{chosen or 'none'}"
            )
        self.check_runtime_for_checkpoint()

    def check_runtime_for_checkpoint(self) -> None:
        """ConfigError when runtime / precision are set for a checkpoint, which runs in MindSpore."""
        if self.model_path:
            return
        for key, default in (("runtime", "auto"), ("precision", "f32")):
            if getattr(self, key) != default:
                raise ConfigError(
                    f"--{key}={getattr(self, key)} applies to an exported model "
                    "(--model_path=FILE.onnx); a checkpoint runs as the MindSpore cell"
                )


@dataclass(frozen=True)
class DeviceConfig(Section):
    """Where a run executes: the MindSpore device and mode (nasfpn/core/context.py) and the
    machines of a multi-node launch (scripts/run_distribute_train*.sh)."""

    NAME = "device"

    device_target: str
    device_id: int
    context_mode: str
    mode: str
    node_num: int
    node_rank: int
    master_addr: str
    master_port: int
    cluster_timeout: int


@dataclass(frozen=True)
class JobConfig(Section):
    """How a run is set up around its work: logging, profiling, replacing earlier outputs, and a
    ModelArts job's copies (nasfpn/jobs)."""

    NAME = "job"

    log_level: str
    enable_profiling: bool
    overwrite: bool
    enable_modelarts: bool
    data_url: str
    train_url: str
    checkpoint_url: str
    data_path: str
    output_path: str
    load_path: str
    need_modelarts_dataset_unzip: bool
    modelarts_dataset_unzip_name: str

    def check(self) -> None:
        if self.checkpoint_url and not self.enable_modelarts:
            raise ConfigError(
                f"--checkpoint_url={self.checkpoint_url}: this is the release's ModelArts "
                "location of a checkpoint (copied to load_path with --enable_modelarts=True);"
                " the download URL of --hub is --hub_url"
            )
        self.check_ranges()


# In the order their checks run (a config with several bad values names the first).
SECTIONS = (
    ModelConfig,
    AnchorConfig,
    DataConfig,
    AugmentationConfig,
    TrainingConfig,
    ScheduleConfig,
    EvaluationConfig,
    PostprocessConfig,
    ExportConfig,
    InferenceConfig,
    DeviceConfig,
    JobConfig,
)


def section_of(key: str):
    """The section class that holds flat key `key` (KeyError for a key of none)."""
    for section in SECTIONS:
        if key in section.keys():
            return section
    raise KeyError(key)


# ---- rules across sections ----------------------------------------------------------------------

# Release keys that describe the network's fixed wiring: null, or the value derived here.
DERIVED_RELEASE_KEYS = (
    "nasfpn_input_channels",
    "nasfpn_num_outs",
    "nasfpn_start_level",
    "nasfpn_end_level",
    "extras_out_channels",
)
DERIVED_FROM = {
    "nasfpn_input_channels": "backbone_depth",
    "nasfpn_num_outs": "steps",
    "nasfpn_start_level": "the network (C3 first)",
    "nasfpn_end_level": "the network (C5 last)",
    "extras_out_channels": "fpn_channels and steps",
}
DERIVED_ANCHOR_KEYS = ("feature_size", "num_default", "num_retinanet_boxes")


def derived_sizes(model: ModelConfig, anchors: AnchorConfig) -> dict:
    """The release's hard-coded sizes and fixed NAS-FPN wiring, computed from the options they
    depend on."""
    sizes = [[model.img_shape[0] // s, model.img_shape[1] // s] for s in anchors.steps]
    square = all(h == w for h, w in sizes)
    levels = len(anchors.steps)
    return {
        "feature_size": [h for h, _ in sizes] if square else sizes,
        "num_default": [anchors.per_cell] * levels,
        "num_retinanet_boxes": sum(h * w for h, w in sizes) * anchors.per_cell,
        "nasfpn_input_channels": [w * BLOCK_EXPANSION[model.backbone_depth] for w in BACKBONE_STAGE_WIDTHS],
        "nasfpn_num_outs": levels,
        "nasfpn_start_level": 0,  # C3 is the first backbone level used (the only choice)
        "nasfpn_end_level": -1,  # C5, the last, in the release's "-1 = last" notation
        "extras_out_channels": [model.fpn_channels] * levels,
    }


def check_across(model: ModelConfig, anchors: AnchorConfig, augmentation: AugmentationConfig) -> None:
    """The rules between sections: every pyramid level has whole cells (img_shape, also as the
    scale-jitter crop, divisible by the largest step), and the release's derived keys are null or
    their derived values."""
    largest = anchors.largest_step
    shape = model.img_shape
    if augmentation.scale_jitter and any(side % largest for side in shape):
        raise ConfigError(
            f"--img_shape: the scale-jitter crop size {shape} (--scale_jitter=true)"
            f" must be divisible by the largest step ({largest})"
        )
    if any(side % largest for side in shape):
        raise ConfigError(
            f"--img_shape: {shape} must be divisible by the largest step "
            f"({largest}), e.g. [{shape[0] // largest * largest or largest}, ...]"
        )
    derived = derived_sizes(model, anchors)
    for key in DERIVED_ANCHOR_KEYS + DERIVED_RELEASE_KEYS:
        given = getattr(anchors if key in DERIVED_ANCHOR_KEYS else model, key)
        if given is not None and given != derived[key]:
            raise ConfigError(
                f"--{key}: {given} does not match the value derived from "
                f"{DERIVED_FROM.get(key, 'img_shape, steps and anchors')} "
                f"({derived[key]}); leave it null"
            )


def release_key_notes(device: DeviceConfig, training: TrainingConfig) -> list:
    """What training does with release keys that have no effect here (logged by train.py)."""
    notes = []
    if device.mode == "sink":
        notes.append(
            "mode=sink: this trainer runs its own step loop and feeds each batch from the "
            f"host on every device ({device.device_target} here); dataset sink mode is not used"
        )
    if training.finish_epoch:
        notes.append(
            f"finish_epoch={training.finish_epoch} is not used (nor was it by the release's "
            "train.py); epoch_size sets the length of training"
        )
    return notes
