"""Size, conversion time, largest difference from Keras and inference time per image of each
``cxr-tf export`` format, for DenseNet121 at 224 px (the CheXNet model; random weights, since the
numbers depend on the graph, not the weights).

One command: ``python benchmarks/export.py [--backbone densenet121] [--size 224]``. Keras is the
baseline measured in the same run, on the same batch of 8 raw-pixel images.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main(argv=None) -> dict:
    """Export to every format and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="densenet121")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    from cxr_tf.interop.export import FORMATS, export
    from cxr_tf.models import save_model
    from cxr_tf.models.build import build_model

    tmp = Path(tempfile.mkdtemp())
    model = build_model("chexnet", backbone=args.backbone, weights=None, image_size=args.size)
    save_model(model, tmp / "model.keras")
    keras_bytes = (tmp / "model.keras").stat().st_size
    rows = {}
    for fmt, suffix in zip(FORMATS, ("", ".tflite", ".onnx")):
        rows[fmt] = export(tmp / "model.keras", fmt, tmp / f"model{suffix}", images=())
    print(f"{args.backbone} {args.size} px; model.keras {keras_bytes / 1e6:.1f} MB")
    print(f"{'format':11s} {'MB':>7s} {'convert s':>10s} {'max diff':>10s} {'ms/img':>8s} "
          f"{'Keras ms/img':>13s} {'ratio':>6s}")
    for fmt, r in rows.items():
        print(f"{fmt:11s} {r['bytes'] / 1e6:7.1f} {r['convert_s']:10.1f} {r['max_abs_diff']:10.2e} "
              f"{1e3 * r['export_s_per_image']:8.2f} {1e3 * r['keras_s_per_image']:13.2f} "
              f"{r['keras_s_per_image'] / r['export_s_per_image']:6.2f}")
    return rows


if __name__ == "__main__":
    main()
