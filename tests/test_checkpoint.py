"""Strict loading of release-style checkpoints (docs/architecture.md#the-checkpoints-names)."""
import mindspore as ms
import numpy as np
import pytest

from src.checkpoint import CheckpointError, load_checkpoint_into, save_checkpoint_atomic
from src.inference.build import build_inference_network
from src.files import ChecksumError, sha256_of
from tests.conftest import make_config
from tests.helpers.manifest import manifest_checkpoint_params


@pytest.fixture(scope="module")
def net():
    return build_inference_network(make_config())


def _values(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.mark.slow  # builds the 640x640 network
def test_release_style_checkpoint_loads_and_optimizer_state_is_ignored(net, release_ckpt):
    stored = ms.load_checkpoint(release_ckpt)
    assert "moments.network.backbone.conv1.weight" in stored and "global_step" in stored
    ignored = load_checkpoint_into(net, release_ckpt)
    assert set(ignored) == {n for n in stored if not n.startswith("network.")}
    assert len(ignored) == 371 + 3
    loaded = _values(net)
    for name in ("network.backbone.conv1.weight", "network.neck.fpn_stages.6.8.out_conv.features.2.moving_variance",
                 "network.head.multi_cls_layers.4.feats.8.weight"):
        np.testing.assert_array_equal(loaded[name], stored[name].asnumpy())


def _rewrite(src, dst, drop=(), reshape=()):
    params = []
    for name, value in ms.load_checkpoint(src).items():
        if name in drop:
            continue
        data = value.asnumpy()
        if name in reshape:
            data = np.zeros(reshape[name], data.dtype)
        params.append({"name": name, "data": ms.Tensor(data)})
    ms.save_checkpoint(params, str(dst))
    return str(dst)


@pytest.mark.slow  # builds the 640x640 network
def test_missing_or_misshapen_parameters_are_refused_without_partial_load(net, release_ckpt, tmp_path):
    missing = _rewrite(release_ckpt, tmp_path / "missing.ckpt",
                       drop={"network.neck.lateral_convs.1.conv.weight"})
    wrong = _rewrite(release_ckpt, tmp_path / "wrong.ckpt",
                     reshape={"network.head.multi_loc_layers.2.feats.8.weight": (9, 256, 3, 3)})
    # Put the network into a known state different from the file's.
    other = manifest_checkpoint_params([(p.name, p.shape, True) for p in net.get_parameters()],
                                       seed=5, with_optimizer_state=False)
    ms.load_param_into_net(net, {d["name"]: ms.Parameter(d["data"], name=d["name"]) for d in other})
    before = _values(net)
    with pytest.raises(CheckpointError, match=r"1 missing: network.neck.lateral_convs.1.conv.weight"):
        load_checkpoint_into(net, missing)
    with pytest.raises(CheckpointError, match=r"1 with the wrong shape: network.head.multi_loc_layers.2"
                                              r".feats.8.weight \[9, 256, 3, 3\] \(expected \[36, 256, 3, 3\]\)"):
        load_checkpoint_into(net, wrong)
    after = _values(net)
    assert all(np.array_equal(before[k], after[k]) for k in before), "a refused file changed weights"


@pytest.mark.slow  # builds the 640x640 network
def test_unreadable_and_absent_files(net, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint_into(net, str(tmp_path / "nope.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.ckpt: not a readable MindSpore checkpoint"):
        load_checkpoint_into(net, str(junk))


@pytest.mark.slow  # builds the 640x640 network
def test_sha256_is_checked_before_loading(net, release_ckpt):
    good = sha256_of(release_ckpt)
    load_checkpoint_into(net, release_ckpt, expected_sha256=good)
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {good}"):
        load_checkpoint_into(net, release_ckpt, expected_sha256="0" * 64)


@pytest.mark.slow  # builds the 640x640 network
def test_atomic_save_round_trip(tmp_path, net, release_ckpt):
    load_checkpoint_into(net, release_ckpt)
    path = save_checkpoint_atomic(net, str(tmp_path / "out" / "saved.ckpt"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["saved.ckpt"]
    assert set(ms.load_checkpoint(path)) == {p.name for p in net.get_parameters()}


@pytest.fixture(scope="module")
def two_stage_ckpt(tmp_path_factory):
    """A checkpoint of a 2-stage tiny network (as its training would write: with optimizer state)."""
    from tests.conftest import TINY
    net = build_inference_network(make_config(*TINY, "--fpn_stages=2"))
    params = [{"name": p.name, "data": p.data} for p in net.get_parameters()]
    params += [{"name": "moments." + p.name, "data": ms.Tensor(np.zeros(p.shape, np.float32))}
               for p in net.get_parameters()]
    path = str(tmp_path_factory.mktemp("two") / "two_stages.ckpt")
    ms.save_checkpoint(params, path)
    return path


def test_parameters_the_network_does_not_have_are_refused(two_stage_ckpt):
    from tests.conftest import TINY
    net = build_inference_network(make_config(*TINY))  # fpn_stages=1
    before = _values(net)
    extra = sorted(n for n in ms.load_checkpoint(two_stage_ckpt)
                   if n.startswith("network.neck.fpn_stages.1."))
    assert len(extra) > 20
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint_into(net, two_stage_ckpt)
    message = str(raised.value)
    assert message.startswith(f"{two_stage_ckpt} does not fit the network: {len(extra)} not in the "
                              f"network: {', '.join(extra[:8])} ... (+{len(extra) - 8} more). Check ")
    assert "fpn_stages" in message and "backbone_depth" in message
    assert "moments." not in message  # optimizer state is ignored, not reported
    after = _values(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # The same file fits the network it was trained as.
    load_checkpoint_into(build_inference_network(make_config(*TINY, "--fpn_stages=2")), two_stage_ckpt)


def test_filter_weight_skips_the_class_head_both_ways(tmp_path):
    from src.training.trainer import CLASS_HEAD
    from tests.conftest import TINY
    source = build_inference_network(make_config(*TINY, "--num_classes=81"))
    path = str(tmp_path / "coco_classes.ckpt")
    ms.save_checkpoint(source, path)
    target = build_inference_network(make_config(*TINY, "--num_classes=4"))
    with pytest.raises(CheckpointError, match="with the wrong shape: network.head.multi_cls_layers"):
        load_checkpoint_into(target, path)
    ignored = load_checkpoint_into(target, path, skip=(CLASS_HEAD,))
    assert ignored and all(n.startswith(CLASS_HEAD) for n in ignored)
    loaded, stored = _values(target), ms.load_checkpoint(path)
    np.testing.assert_array_equal(loaded["network.backbone.conv1.weight"],
                                  stored["network.backbone.conv1.weight"].asnumpy())
