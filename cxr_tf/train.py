"""``cxr-tf train``: the CheXNet recipe by default, any preset/backbone/loss by config.

Training is built from parts that hyperparameter search and federated training call without a
run directory: :func:`configure_tf`, :func:`build_loss`, :func:`build_optimizer`,
:func:`build_compiled_model`, :func:`make_datasets` and :func:`make_callbacks` (or all of them at
once, :func:`build_parts`). :func:`train` is the run loop over them: it validates everything and
builds the model and datasets before it writes anything, then keeps a run directory
(see :mod:`cxr_tf.rundir`) with atomic checkpoints, resumable state and TensorBoard logs.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from cxr_tf import __version__, atomic
from cxr_tf.config import TrainConfig, for_resume
from cxr_tf.errors import CxrConfigError, CxrDataError
from cxr_tf.findings import IGNORE, metric_targets, policies, train_targets
from cxr_tf.recordsdir import RecordsDir
from cxr_tf.rundir import CONFIG, SPLIT_SUMMARY, STATE, RunDir

log = logging.getLogger(__name__)


def configure_tf(cfg: TrainConfig) -> None:
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


def split_targets(records: RecordsDir, split: str, cfg: TrainConfig, metric: bool = False):
    """One split's targets in evaluation order: the training encoding (the run's policies), or
    with ``metric`` the certain labels that AUROC is computed on."""
    labels = records.split_frame(split)[list(cfg.findings)].to_numpy(dtype="float32")
    return metric_targets(labels, cfg.blank) if metric else train_targets(labels, cfg.uncertain, cfg.blank,
                                                                          cfg.findings)


def check_records(cfg: TrainConfig, records: RecordsDir) -> None:
    """Refuse records (and policies) a run cannot train on, before anything is built."""
    records.require_splits("train", "val")
    records.label_indices(cfg.findings)
    per = policies(cfg.uncertain, cfg.findings)
    has_uncertain = {f for s in records.splits.values() for f, n in s["uncertain"].items() if n}
    ignored = {f for f, p in zip(cfg.findings, per) if p in ("ignore", "selftrained") and f in has_uncertain}
    if cfg.loss == "bce" and (ignored or cfg.blank == "ignore") and "multiclass" not in per:
        what = f"uncertain {', '.join(sorted(ignored))}" if ignored else "blank"
        raise CxrConfigError(f"plain bce cannot ignore entries ({what} labels are ignored)", key="loss",
                             fix="masked_bce (U-Ignore), or a policy that maps them")
    if "multiclass" in per and cfg.loss not in ("bce", "masked_bce"):
        raise CxrConfigError(f"U-MultiClass trains a softmax head with cross-entropy, not {cfg.loss}", key="loss",
                             fix="masked_bce")


def multiclass_findings(cfg: TrainConfig) -> list[str]:
    """The findings a config trains with U-MultiClass."""
    return [f for f, p in zip(cfg.findings, policies(cfg.uncertain, cfg.findings)) if p == "multiclass"]


def build_loss(cfg: TrainConfig, records: RecordsDir | None = None):
    """The named loss (with U-MultiClass findings, the multiclass loss on the logits);
    ``weighted_bce`` counts positives on the training split after the label policy (so U-Ones
    positives count as positives)."""
    from cxr_tf import losses

    multiclass = multiclass_findings(cfg)
    if multiclass:
        return losses.MulticlassLoss([f in multiclass for f in cfg.findings])
    kwargs = {}
    if cfg.loss == "weighted_bce":
        if records is None:
            raise CxrConfigError("weighted_bce needs the records to count positives", key="loss")
        y = split_targets(records, "train", cfg)
        kwargs = {"positives": ((y > 0.5) & (y != IGNORE)).sum(axis=0).tolist(),
                  "totals": (y != IGNORE).sum(axis=0).tolist()}
    elif cfg.loss == "focal":
        kwargs = {"alpha": cfg.focal_alpha, "gamma": cfg.focal_gamma}
    return losses.get(cfg.loss, **kwargs)


def build_optimizer(cfg: TrainConfig):
    """Adam with the fused TensorFlow kernel (same update as Keras' Adam)."""
    from cxr_tf.optimizers import FusedAdam
    return FusedAdam(cfg.lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2)


def build_compiled_model(cfg: TrainConfig, records: RecordsDir | None = None):
    """The training model of a resolved config, compiled, its optimizer built (no variable is
    created inside the first traced step). Call inside a strategy's scope to distribute it. It is
    the model itself, or with U-MultiClass findings its logits (see
    :func:`cxr_tf.models.training_model`; :func:`cxr_tf.models.contract_model` gives it back)."""
    import keras

    from cxr_tf.models import build_model, training_model

    model = build_model(cfg.preset, backbone=cfg.backbone, head=cfg.head, findings=cfg.findings,
                        weights=cfg.weights, image_size=cfg.image_size, transition_depth=cfg.transition_depth,
                        lse_r=cfg.lse_r, dropout=cfg.dropout, normalization=cfg.normalization,
                        stored_size=records.stored_size if records else None,
                        aspect=records.aspect if records else "pad", multiclass=multiclass_findings(cfg))
    if cfg.bn_momentum is not None:  # e.g. 0.9 = PyTorch's BN momentum 0.1 (CheXNet's framework)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = cfg.bn_momentum
    model = training_model(model)
    model.compile(optimizer=build_optimizer(cfg), loss=build_loss(cfg, records), jit_compile=cfg.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


@dataclass
class ValTargets:
    """The validation split's targets: the training encoding (for val_loss) and the certain
    labels (for AUROC)."""

    loss: object
    metric: object


def make_datasets(cfg: TrainConfig, records: RecordsDir, soft_targets=None):
    """(training dataset, validation pixels dataset, :class:`ValTargets`) for a resolved config;
    ``soft_targets`` for the ``selftrained`` findings (see :mod:`cxr_tf.selftrain`)."""
    from cxr_tf.pipeline import Augment, make_dataset

    augment = Augment(cfg.hflip, tuple(cfg.crop_scale) if cfg.crop_scale else None, cfg.rotation,
                      cfg.brightness, cfg.contrast)
    common = dict(image_size=cfg.image_size, uncertain=cfg.uncertain, blank=cfg.blank,
                  findings=cfg.findings, batch_size=cfg.batch_size)
    train_ds = make_dataset(records.path, "train", augment=augment, seed=cfg.seed,
                            deterministic=cfg.deterministic, drop_remainder=True,
                            shuffle_buffer=cfg.shuffle_buffer, soft_targets=soft_targets,
                            repeat=cfg.steps_per_epoch is not None or cfg.checkpoint_every is not None, **common)
    val_ds = make_dataset(records.path, "val", training=False, **common).map(lambda x, y: x)
    return train_ds, val_ds, ValTargets(split_targets(records, "val", cfg), split_targets(records, "val", cfg, True))


def schedule(cfg: TrainConfig, records: RecordsDir) -> tuple[int, int | None]:
    """(Keras epochs, steps per Keras epoch): the run's epochs, or with ``checkpoint_every`` as
    many checkpoint intervals of that many steps as the epochs hold."""
    if cfg.checkpoint_every is None:
        return cfg.epochs, cfg.steps_per_epoch
    per_epoch = cfg.steps_per_epoch or max(1, records.splits["train"]["images"] // cfg.batch_size)
    return max(1, math.ceil(cfg.epochs * per_epoch / cfg.checkpoint_every)), cfg.checkpoint_every


def make_callbacks(cfg: TrainConfig, model, val_ds, val_targets: ValTargets, run: Path | None = None,
                   state: dict | None = None, chief: bool = True):
    """Our callbacks, in the order they must run: validation metrics first (they put val_loss
    and AUROC into the logs), the plateau rule (unless the schedule is constant), then (with a
    run directory) checkpoints, timing and TensorBoard. Returns (callbacks, timer)."""
    import keras

    from cxr_tf.callbacks import AtomicCheckpoint, ResumablePlateau, StepTimer, ValidationMetrics

    callbacks = [ValidationMetrics(val_ds, val_targets.loss, val_targets.metric, cfg.findings, model.loss,
                                   cfg.batch_size, tasks=cfg.select_findings)]
    plateau = None
    if cfg.lr_schedule == "plateau":
        plateau = ResumablePlateau(monitor="val_loss", factor=cfg.plateau_factor,
                                   patience=cfg.plateau_patience, min_lr=cfg.min_lr)
        plateau.restore((state or {}).get("plateau"))
        callbacks.append(plateau)
    timer = StepTimer(run / "timing.json" if run and chief else None, cfg.batch_size)
    if run is not None:
        callbacks.append(AtomicCheckpoint(run, plateau, state, write=chief, monitor=cfg.select_by,
                                          keep=cfg.keep_checkpoints))
    callbacks.append(timer)
    if run is not None and chief:
        callbacks.append(keras.callbacks.TensorBoard(str(run / "logs"), write_graph=False,
                                                     update_freq="epoch", profile_batch=0))
    return callbacks, timer


@dataclass
class Parts:
    """Everything a training loop needs, built from a resolved config."""

    config: TrainConfig
    records: RecordsDir
    strategy: object
    model: object
    train_ds: object
    val_ds: object
    val_targets: ValTargets


def build_parts(config: TrainConfig, model=None) -> Parts:
    """Resolve the config and build records, strategy, compiled model and datasets, writing
    nothing (for search and federated clients). ``model``: reuse an already compiled one."""
    from cxr_tf.distribute import strategy_for

    cfg = config.resolved()
    records = RecordsDir(cfg.records)
    check_records(cfg, records)
    configure_tf(cfg)
    strategy = strategy_for(cfg.strategy)
    if model is None:
        with strategy.scope():
            model = build_compiled_model(cfg, records)
    train_ds, val_ds, val_targets = make_datasets(cfg, records)
    return Parts(cfg, records, strategy, model, train_ds, val_ds, val_targets)


def planned_config(config: TrainConfig, resume: bool) -> tuple[TrainConfig, dict | None]:
    """The resolved config a run will use and its saved state (when resuming), refusing what
    cannot be started; writes nothing."""
    if config.out is None:
        raise CxrConfigError("a training run needs a run directory", key="out")
    run = Path(config.out)
    if resume:
        if not (run / CONFIG).is_file():
            raise CxrDataError(run, "nothing to resume: not a run directory (no config.json)")
        saved = RunDir(run)
        cfg = for_resume(saved.config, config.given_values())
        state = saved.state
        if state is None and not _phases_started(cfg):
            raise CxrDataError(run, "nothing to resume: no epoch completed; start it again without --resume")
        return cfg, state
    cfg = config.resolved()
    if (run / STATE).is_file() or _phases_started(cfg):
        epochs = json.loads((run / STATE).read_text()).get("epoch") if (run / STATE).is_file() else 0
        raise CxrDataError(run, f"already a run directory ({epochs} epoch(s) done); use --resume to "
                                "continue it, or a new --out")
    return cfg, None


def _phases_started(cfg: TrainConfig) -> bool:
    """Whether a self-training run has finished an epoch of its first phase."""
    from cxr_tf.selftrain import PHASE1
    return "selftrained" in policies(cfg.uncertain, cfg.findings) and (Path(cfg.out) / PHASE1 / STATE).is_file()


def train(config: TrainConfig, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train (or resume) a run; returns the run's final state. ``callbacks`` run after ours (for
    example :class:`cxr_tf.explain.CamImages`, which ``cxr-tf train`` adds). A config with
    U-SelfTrained findings trains in two phases (:mod:`cxr_tf.selftrain`)."""
    cfg, state = planned_config(config, resume)
    if "selftrained" in policies(cfg.uncertain, cfg.findings):
        from cxr_tf.selftrain import train_selftrained
        return train_selftrained(cfg, state, callbacks)
    return fit(cfg, state, callbacks)


def fit(cfg: TrainConfig, state: dict | None = None, callbacks: list | None = None, soft_targets=None) -> dict:
    """The run loop for a resolved config: build (or load the checkpoint of ``state``), write the
    run directory's config once everything is built, fit with our callbacks, return the state."""
    run = Path(cfg.out)
    records = RecordsDir(cfg.records)
    check_records(cfg, records)
    configure_tf(cfg)

    from cxr_tf.distribute import prepare_fit, is_chief, strategy_for
    from cxr_tf.models import load_checkpoint

    strategy = strategy_for(cfg.strategy)
    with strategy.scope():
        if state:
            model = load_checkpoint(run / state["checkpoint"])
            model.optimizer.build(model.trainable_variables)
            log.info("resuming %s from epoch %d", run, state["epoch"])
        else:
            model = build_compiled_model(cfg, records)
    train_ds, val_ds, val_targets = make_datasets(cfg, records, soft_targets)
    chief = is_chief()
    if chief and not state:
        if (run / CONFIG).is_file() and not _phases_started(cfg):
            log.warning("%s: no epoch had completed; starting it again", run)
            for stale in ("logs", "checkpoints"):
                shutil.rmtree(run / stale, ignore_errors=True)
        run.mkdir(parents=True, exist_ok=True)
        atomic.write_json(run / SPLIT_SUMMARY, {
            "records": str(records.path.resolve()), "prepare_config": records.summary["config"],
            "counts": records.summary["counts"], "splits": records.splits})
        atomic.write_json(run / "environment.json", _environment())
        atomic.write_json(run / CONFIG, cfg.to_dict())
    ours, timer = make_callbacks(cfg, model, val_ds, val_targets, run, state, chief)
    epochs, steps = schedule(cfg, records)
    initial = state["epoch"] if state else 0
    if initial >= epochs:
        log.info("%s already trained for %d epochs", run, initial)
        return state
    prepare_fit(model, train_ds, strategy)
    model.fit(train_ds, epochs=epochs, initial_epoch=initial, callbacks=ours + list(callbacks or []),
              steps_per_epoch=steps, verbose=cfg.verbose, shuffle=False)
    final = RunDir(run).state or {}
    final["timing"] = timer.result()
    return final


def _environment() -> dict:
    """Library versions and devices, for the audit trail."""
    import keras
    import tensorflow as tf
    return {"cxr_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "devices": [d.name for d in tf.config.list_logical_devices()]}
