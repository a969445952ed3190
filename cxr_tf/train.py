"""``cxr-tf train``: the CheXNet recipe by default, any preset/backbone/loss by option.

A run directory holds: ``config.json`` (the exact resolved config), ``split_summary.json`` (the
records' split counts), ``checkpoints/`` + ``state.json`` (atomic, resumable), ``model.keras``
(best validation loss), ``history.csv``, ``timing.json`` and TensorBoard logs in ``logs/``
(loss, learning rate, per-class and mean validation AUROC every epoch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

from cxr_tf import __version__, atomic
from cxr_tf.errors import CxrError
from cxr_tf.findings import apply_policy
from cxr_tf.prepare import load_summary

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``None`` fields are filled from the preset."""

    records: str
    out: str
    preset: str = "chexnet"
    backbone: str | None = None
    head: str | None = None
    transition_depth: int | None = None
    lse_r: float | None = None
    weights: str | None = "imagenet"
    findings: list | None = None
    image_size: int | None = None
    normalization: str | None = None
    loss: str = "bce"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    plateau_factor: float = 0.1
    plateau_patience: int = 1
    min_lr: float = 1e-7
    bn_momentum: float | None = 0.9   # PyTorch BN momentum 0.1, as CheXNet trained; None keeps Keras 0.99
    hflip: bool = True
    crop_scale: list | None = None
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    uncertain: str = "ignore"
    blank: str = "zeros"
    mixed_precision: bool = False
    jit_compile: bool = False
    fast_start: bool = True
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = False
    steps_per_epoch: int | None = None
    shuffle_buffer: int = 2048
    verbose: int = 2
    tb_cam_images: int = 4            # validation images with Grad-CAM overlays in TensorBoard
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """A copy with preset defaults filled in and the findings fixed."""
        from cxr_tf.findings import vocabulary
        from cxr_tf.models import BACKBONES, preset
        cfg = dataclasses.replace(self)
        p = preset(cfg.preset)
        cfg.backbone = cfg.backbone or p["backbone"]
        cfg.head = cfg.head or p["head"]
        cfg.image_size = cfg.image_size or p["image_size"]
        cfg.normalization = cfg.normalization or BACKBONES[cfg.backbone]["normalization"]
        if cfg.findings is None:
            cfg.findings = list(vocabulary(p.get("dataset", "chestxray14"), p.get("findings")).findings)
        if cfg.weights in ("none", "None", ""):
            cfg.weights = None
        return cfg


def run_config(run_dir) -> dict:
    """A run directory's resolved ``config.json``; a clear error if it is not a run directory."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CxrError(f"{run_dir}: not a run directory (no config.json); train one with `cxr-tf train`")
    return json.loads(path.read_text())


def _configure_tf(cfg: TrainConfig):
    """Seeds, determinism, precision and the start-up settings, before any model is built."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    if cfg.mixed_precision:
        gpu = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    if cfg.fast_start and not tf.config.list_physical_devices("GPU"):
        # On CPU, Grappler's graph rewrites cost seconds of the first step and bought no
        # steady-state speed here (benchmarks/training_startup.py); GPUs keep them (layout).
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def _targets(frame, findings, cfg):
    return apply_policy(frame[list(findings)].to_numpy(dtype="float32"), cfg.uncertain, cfg.blank)


def train(config: TrainConfig, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train (or resume) a run; returns the run's final state. ``callbacks`` are appended to
    ours (which must run first: they put the validation metrics into the logs)."""
    cfg = config.resolved()
    run = Path(cfg.out)
    state_file = run / "state.json"
    if resume:
        if not state_file.is_file():
            raise CxrError(f"{run}: nothing to resume (no state.json)")
        saved = run_config(run)
        saved.update({k: getattr(cfg, k) for k in ("epochs", "verbose")})
        cfg = TrainConfig(**saved)
    elif (run / "config.json").exists():
        raise CxrError(f"{run}: already a run directory; use --resume to continue it, or a new --out")
    summary = load_summary(cfg.records)
    for split in ("train", "val"):
        if split not in summary["splits"]:
            raise CxrError(f"{cfg.records}: the records have no {split!r} split")
    if cfg.loss == "bce" and cfg.uncertain == "ignore" and any(
            sum(s["uncertain"].values()) for s in summary["splits"].values()):
        raise CxrError("the records have uncertain labels: use --loss masked_bce for U-Ignore, or "
                       "an --uncertain policy of zeros/ones with plain bce")

    _configure_tf(cfg)
    import keras

    from cxr_tf import losses
    from cxr_tf.callbacks import AtomicCheckpoint, ResumablePlateau, StepTimer, ValidationMetrics
    from cxr_tf.distribute import is_chief, strategy_for
    from cxr_tf.models import build_model, load_model
    from cxr_tf.optimizers import FusedAdam
    from cxr_tf.pipeline import Augment, make_dataset, split_frame

    run.mkdir(parents=True, exist_ok=True)
    chief = is_chief()
    if chief and not resume:
        atomic.write_json(run / "config.json", dataclasses.asdict(cfg))
        atomic.write_json(run / "split_summary.json", {
            "records": str(Path(cfg.records).resolve()), "prepare_config": summary["config"],
            "counts": summary["counts"], "splits": summary["splits"]})
        atomic.write_json(run / "environment.json", _environment())
    strategy = strategy_for(cfg.strategy)
    train_stats = summary["splits"]["train"]
    loss_kwargs = {}
    if cfg.loss == "weighted_bce":
        loss_kwargs = {"positives": [train_stats["positives"][f] for f in cfg.findings],
                       "totals": [train_stats["images"]] * len(cfg.findings)}
    state = json.loads(state_file.read_text()) if resume else None
    with strategy.scope():
        if resume:
            model = load_model(run / state["checkpoint"], compile=True)
            log.info("resuming %s from epoch %d", run, state["epoch"])
        else:
            model = build_model(cfg.preset, backbone=cfg.backbone, head=cfg.head, findings=cfg.findings,
                                weights=cfg.weights, image_size=cfg.image_size,
                                transition_depth=cfg.transition_depth, lse_r=cfg.lse_r)
            if cfg.bn_momentum is not None:  # e.g. 0.9 = PyTorch's BN momentum 0.1 (CheXNet's framework)
                for layer in model.layers:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.momentum = cfg.bn_momentum
            model.compile(optimizer=FusedAdam(cfg.lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2),
                          loss=losses.get(cfg.loss, **loss_kwargs), jit_compile=cfg.jit_compile)
        model.optimizer.build(model.trainable_variables)   # no variable creation inside the trace
    augment = Augment(cfg.hflip, tuple(cfg.crop_scale) if cfg.crop_scale else None, cfg.rotation,
                      cfg.brightness, cfg.contrast)
    common = dict(image_size=cfg.image_size, normalization=cfg.normalization, uncertain=cfg.uncertain,
                  blank=cfg.blank, findings=cfg.findings, batch_size=cfg.batch_size)
    train_ds = make_dataset(cfg.records, "train", augment=augment, seed=cfg.seed,
                            deterministic=cfg.deterministic, drop_remainder=True,
                            shuffle_buffer=cfg.shuffle_buffer, repeat=cfg.steps_per_epoch is not None, **common)
    val_ds = make_dataset(cfg.records, "val", training=False, **common).map(lambda x, y: x)
    val_targets = _targets(split_frame(cfg.records, "val"), cfg.findings, cfg)

    plateau = ResumablePlateau(monitor="val_loss", factor=cfg.plateau_factor,
                               patience=cfg.plateau_patience, min_lr=cfg.min_lr)
    plateau.restore((state or {}).get("plateau"))
    timer = StepTimer(run / "timing.json", cfg.batch_size)
    extra = list(callbacks or [])
    callbacks = [ValidationMetrics(val_ds, val_targets, cfg.findings, model.loss, cfg.batch_size),
                 plateau, AtomicCheckpoint(run, plateau, state, write=chief), timer]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(str(run / "logs"), write_graph=False,
                                                     update_freq="epoch", profile_batch=0))
    if chief and cfg.tb_cam_images:
        callbacks.append(_cam_callback(cfg, run))
    callbacks += extra
    initial = state["epoch"] if state else 0
    if initial >= cfg.epochs:
        log.info("%s already trained for %d epochs", run, initial)
        return state
    model.fit(train_ds, epochs=cfg.epochs, initial_epoch=initial, callbacks=callbacks,
              steps_per_epoch=cfg.steps_per_epoch, verbose=cfg.verbose, shuffle=False)
    final = json.loads(state_file.read_text()) if state_file.exists() else {}
    final["timing"] = timer.result()
    return final


def _cam_callback(cfg: TrainConfig, run: Path):
    """The TensorBoard Grad-CAM callback on the first validation images."""
    import numpy as np

    from cxr_tf.callbacks import CamImages
    from cxr_tf.pipeline import make_dataset
    ds = make_dataset(cfg.records, "val", training=False, batch_size=cfg.tb_cam_images,
                      image_size=cfg.image_size, normalization=cfg.normalization, findings=cfg.findings)
    images = next(iter(ds))[0].numpy()
    gray = make_dataset(cfg.records, "val", training=False, batch_size=cfg.tb_cam_images,
                             image_size=cfg.image_size, normalization="unit", findings=cfg.findings)
    display = next(iter(gray))[0].numpy()[..., 0]
    return CamImages(run / "logs" / "cam", images, np.clip(display, 0, 1), cfg.findings)


def _environment() -> dict:
    """Library versions and devices, for the audit trail."""
    import keras
    import tensorflow as tf
    return {"cxr_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "devices": [d.name for d in tf.config.list_logical_devices()]}
