"""Grad-CAM overlays in TensorBoard during training (``logs/cam``)."""

from __future__ import annotations

import keras
import numpy as np

from cxr_tf.explain.methods import heatmaps


class CamImages(keras.callbacks.Callback):
    """Each epoch, log a few validation images with their heatmap overlay (the image's most
    probable finding) to TensorBoard, so one can watch where the model starts to look.
    ``images``: model input, grayscale pixels on 0..255, [N, H, W, 1]."""

    def __init__(self, logdir, images: np.ndarray, findings, method: str = "gradcam"):
        super().__init__()
        self.logdir, self.images = str(logdir), np.asarray(images, np.float32)
        self.findings, self.method = list(findings), method
        self._writer = None

    @classmethod
    def from_records(cls, records_dir, logdir, n: int, image_size: int, findings, method: str = "gradcam"):
        """The first ``n`` validation images of a records directory."""
        from cxr_tf.pipeline import make_dataset
        ds = make_dataset(records_dir, "val", training=False, batch_size=n, image_size=image_size,
                          findings=findings)
        return cls(logdir, next(iter(ds))[0].numpy(), findings, method)

    def on_train_begin(self, logs=None):
        from cxr_tf.models import contract_model
        self._explained = contract_model(self.model)    # one probability per finding, shared layers

    def on_epoch_end(self, epoch, logs=None):
        import matplotlib
        import tensorflow as tf

        probs = self._explained.predict(self.images, verbose=0)
        targets = probs.argmax(axis=1)
        maps = heatmaps(self._explained, self.images, targets, self.method, warn_empty=False)
        jet = matplotlib.colormaps["jet"]
        gray = np.repeat(self.images / 255.0, 3, axis=-1)
        overlays = 0.55 * gray + 0.45 * jet(maps)[..., :3]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default():
            for i, (img, t) in enumerate(zip(overlays, targets)):
                tf.summary.image(f"gradcam/{i}", img[None].astype(np.float32), step=epoch,
                                 description=f"{self.findings[t]} p={probs[i, t]:.3f}")
        self._writer.flush()


def cam_images_for(cfg, run_dir) -> CamImages | None:
    """The callback ``cxr-tf train`` adds for a resolved config (None when ``tb_cam_images`` is 0)."""
    from pathlib import Path
    if not cfg.tb_cam_images:
        return None
    return CamImages.from_records(cfg.records, Path(run_dir) / "logs" / "cam", cfg.tb_cam_images,
                                  cfg.image_size, cfg.findings)
