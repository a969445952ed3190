"""How well can a CAM localize at all? The ChestX-ray8 protocol's resolution ceiling per input size.

One command: ``python benchmarks/localization_ceiling.py [--nih DIR] [--phantom-images 600]``.

For each box list (the real NIH ``BBox_List_2017.csv`` when ``--nih`` or ``../shared/data/nih``
is there; freshly drawn phantoms always) and each input size with a stride-32 backbone (DenseNet121
and ResNet50 both end at stride 32), it scores an *oracle* CAM: the ground-truth box mask averaged
over each cell of the S x S feature grid, upsampled, normalised to [0, 255], thresholded at 60 and
180, boxed and scored exactly like a model's CAM (``cxr_tf.explain.localize``). That is the best any CAM
on that grid can be expected to do. The baseline in the same run is the paper's Table 4
(1024 px input, S = 32) and, for phantoms, the 128-px demo (S = 4); ratios are printed against
the ceiling.

Numpy only: no model, no TensorFlow; about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

SIZES = (128, 224, 256, 512, 1024)   # 128: the demo; 224: CheXNet; 1024: ChestX-ray8 (S = 32)
STRIDE = 32
T = 0.5


def _boxes(data_dir: Path) -> pd.DataFrame:
    from cxr_tf.core import cards
    from cxr_tf.vocab.findings import vocabulary
    from cxr_tf.datasets.chestxray14.source import find_file, read_boxes
    layout = cards.dataset_card("chestxray14")["layout"]
    path = find_file(data_dir, layout["bbox_file"])
    if path is None:
        raise SystemExit(f"no {layout['bbox_file']} in {data_dir}")
    return read_boxes(path, vocabulary("chestxray14"))


def ceiling_by_size(boxes: pd.DataFrame, sizes=SIZES) -> pd.DataFrame:
    """Finding x input size -> oracle accuracy at T(IoBB) = 0.5 (and the box count)."""
    from cxr_tf.explain.localize import oracle_ceiling, summarize
    cols = {}
    for size in sizes:
        s = summarize(oracle_ceiling(boxes, grid=size // STRIDE, image_size=size))
        s = s[s["T"] == T].set_index("finding")
        cols[f"{size}px S={size // STRIDE}"] = s["accuracy"]
        cols["boxes"] = s["boxes"]
    table = pd.DataFrame(cols)
    return table[["boxes"] + [c for c in table if c != "boxes"]]


def main(argv=None) -> dict:
    """Print the ceiling tables; returns them as dicts."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nih", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih"))
    ap.add_argument("--phantom-images", type=int, default=600)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    pd.set_option("display.width", 200)
    from cxr_tf.core import cards
    ref = cards.reproduction("chestxray8")["reference"]["localization"]
    paper = pd.Series(ref["accuracy"][ref["T"].index(T)], index=ref["findings"])
    out = {}
    if Path(args.nih).is_dir():
        t0 = time.perf_counter()
        table = ceiling_by_size(_boxes(Path(args.nih)))
        table["paper (1024px)"] = paper
        table["paper / ceiling@1024"] = paper / table["1024px S=32"]
        print(f"NIH BBox_List_2017 ({int(table['boxes'].sum())} boxes): oracle-CAM accuracy at T(IoBB)={T} "
              f"by input size ({time.perf_counter() - t0:.1f} s)")
        print(table.round(3).to_string(), "\n")
        out["nih"] = table.to_dict()
    else:
        print(f"(no NIH box list at {args.nih}; phantoms only)\n")
    from cxr_tf.datasets.chestxray14.phantom import write_dataset
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_dataset(tmp, n_images=args.phantom_images, size=128, seed=0)
        table = ceiling_by_size(_boxes(Path(tmp)))
    table["ceiling@1024 / ceiling@128"] = table["1024px S=32"] / table["128px S=4"].where(table["128px S=4"] > 0)
    print(f"Phantoms ({args.phantom_images} images, {int(table['boxes'].sum())} boxes, the demo's design): "
          f"oracle-CAM accuracy at T(IoBB)={T} by input size ({time.perf_counter() - t0:.1f} s)")
    print(table.round(3).to_string())
    out["phantom"] = table.to_dict()
    return out


if __name__ == "__main__":
    main()
