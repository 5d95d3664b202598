"""Export the inference network (boxes + scores) to MINDIR, AIR (Ascend) or ONNX.

    python export.py --checkpoint_path=CKPT --file_name=retinanet_nasfpn --file_format=MINDIR \
        --device_target=CPU [--export_batch_size=1] [--img_shape=[640,640]]
"""

from src.config import load_config
from src.context import set_context, setup_logging
from src.modelarts import modelarts_entry
from src.cli import run_entry_point


def main(argv=None):
    cfg = load_config(argv)
    log = setup_logging(cfg.log_level)
    from src.deploy.build import build_inference_network
    from src.deploy.export import export_network
    set_context(cfg)
    if not cfg.checkpoint_path:
        log.warning("no --checkpoint_path: exporting randomly initialised weights")
    net = build_inference_network(cfg, cfg.checkpoint_path, cfg.checkpoint_sha256)
    path = export_network(net, cfg.file_name, cfg.file_format, cfg.export_batch_size,
                          tuple(cfg.img_shape), cfg.device_target)
    log.info("exported %s (input [%d, 3, %d, %d] float32 -> boxes, scores)", path,
             cfg.export_batch_size, *cfg.img_shape)
    return path


if __name__ == "__main__":
    run_entry_point(modelarts_entry(main))
