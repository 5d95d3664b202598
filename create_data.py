"""Convert a dataset to MindRecord shards (docs/conventions.md#mindrecord-files-and-annotation-paths).

python create_data.py --create_dataset=coco --coco_root=DIR --mindrecord_dir=OUT [--is_training=False]
python create_data.py --create_dataset=coco --anno_path=JSON --train_image_dir=IMAGES --mindrecord_dir=OUT
python create_data.py --create_dataset=other --image_dir=IMAGES --anno_path=LIST.txt --mindrecord_dir=OUT
python create_data.py --create_dataset=embedded --coco_root=DIR ...   (generates the shapes set first)
python create_data.py --create_dataset=voc --dataset_root=VOCdevkit/VOC2012 --mindrecord_dir=OUT
python create_data.py --create_dataset=yolo --dataset_root=DIR --mindrecord_dir=OUT   (data.yaml or classes.txt)
python create_data.py --create_dataset=coco --anno_path=export.json --image_dir=DIR --val_fraction=0.2 ...

voc and yolo, and a split export (--val_fraction), write the split's ground truth as COCO JSON into
MINDRECORD_DIR/annotations/instances_<split>.json: --coco_root=MINDRECORD_DIR then gives train.py
and eval.py the class names and the ground truth.
"""

# The command lives in the package (nasfpn/commands/convert.py, also `nasfpn convert`); this file is
# the release's entry point for it.
from nasfpn.commands.convert import convert, main, run  # noqa: F401  (callers import them from here)
from nasfpn.core.exits import run_entry_point
from nasfpn.jobs.modelarts import modelarts_entry

if __name__ == "__main__":
    run_entry_point(modelarts_entry(run))
