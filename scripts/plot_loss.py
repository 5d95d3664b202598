"""Draw the training loss (and lr) from a train_log.csv to a PNG (docs/training.md).

    python scripts/plot_loss.py TRAIN_LOG_CSV OUT_PNG [--title TEXT]

The title names the run: --title, else the folder of the log (e.g. outputs/demo/ckpt/ckpt_0).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


RUN_FOLDER_PARTS = 3  # <run>/<save_checkpoint_path>/ckpt_<rank>: enough to tell runs apart


def run_title(log_path):
    """'NAS-FPN training: <the last folders above train_log.csv>', the run's own name."""
    folder = os.path.dirname(os.path.abspath(log_path))
    parts = folder.strip(os.sep).split(os.sep)[-RUN_FOLDER_PARTS:]
    return "NAS-FPN training: " + "/".join(parts)


def plot(log_path, out_path, title=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter
    from nasfpn.training.trainer import read_train_log

    steps, loss, lr = read_train_log(log_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, color="0.75", lw=0.8, label="loss per step")
    window = max(1, len(loss) // 25)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1 :], smooth, color="C0", lw=2, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (focal + smooth-L1) / positives")
    ax.set_yscale("log")
    # Plain numbers on the log axis ("2", "3") rather than "2x10^0".
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax2 = ax.twinx()
    ax2.plot(steps, lr, color="C1", lw=1, label="learning rate")
    ax2.set_ylabel("learning rate")
    # The lr line lives on the twin axis; one legend needs the handles of both axes.
    handles, labels = ax.get_legend_handles_labels()
    lr_handles, lr_labels = ax2.get_legend_handles_labels()
    ax.legend(handles + lr_handles, labels + lr_labels, loc="upper right")
    ax.set_title(title or run_title(log_path))
    fig.tight_layout()
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out_path)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python scripts/plot_loss.py", description="Draw loss and lr of a train_log.csv to a PNG."
    )
    parser.add_argument(
        "train_log", metavar="TRAIN_LOG_CSV", help="<save_checkpoint_path>/ckpt_<rank>/train_log.csv of a run"
    )
    parser.add_argument("out_png", metavar="OUT_PNG", help="image to write")
    parser.add_argument(
        "--title", default=None, help="plot title; default 'NAS-FPN training: ' + the log's folder"
    )
    args = parser.parse_args(argv)
    if not os.path.isfile(args.train_log):
        parser.exit(2, f"error: training log not found: {args.train_log}\n")
    print(plot(args.train_log, args.out_png, args.title))


if __name__ == "__main__":
    main()
