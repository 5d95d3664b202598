"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
python create_data.py --create_dataset=coco --anno_path=JSON --train_image_dir=IMAGES --mindrecord_dir=OUT
python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
"""

# The command lives in the package (nasfpn/commands/convert.py, also `nasfpn convert`); this file is
# the release's entry point for it.
from nasfpn.commands.convert import convert, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
