"""MindSpore Hub entry point (card: hub/nasfpn.md).

    import mindspore_hub as mshub
    net = mshub.load("mindspore/1.6/nasfpn_coco2017", "nasfpn")

The hub calls create_network(), downloads the published checkpoint, checks its sha256 against the
card and loads it with load_param_into_net. Without the hub: `nasfpn.inference.hub.published_checkpoint`.
"""

from nasfpn.config.flat import load_config
from nasfpn.inference.build import build_inference_network

NAMES = ("nasfpn", "nas-fpn", "nas_fpn")


def create_network(name, *args, **kwargs):
    """The inference network (RetinaNetInfer: images -> decoded boxes, sigmoid scores) for `name`.

    kwargs override config keys (e.g. img_shape=[512, 512], num_classes=21); `config_path` picks
    another config file. Positional arguments are not used (the hub passes none)."""
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"create_network: unknown network name {name!r}; expected one of {list(NAMES)}")
    if args:
        raise TypeError(
            f"create_network({name!r}): unexpected positional arguments {args}; "
            "pass config overrides as keywords"
        )
    config_path = kwargs.pop("config_path", None)
    cfg = load_config([], config_path=config_path)
    if kwargs:
        cfg = cfg.replace(**kwargs)
    return build_inference_network(cfg)
