"""One training session: a resolved :class:`~cxr_tf.training.config.TrainConfig` and its records
directory, and everything a training loop is built from.

:class:`Session` owns, in this order: the checks of config against records, TensorFlow's start-up
settings (seeds, determinism, precision), the distribution strategy, the model (built and compiled
once, or loaded from a checkpoint), the loss and optimizer, the datasets and validation targets,
our callbacks, the epoch schedule, and :meth:`Session.run`: a run directory with atomic checkpoints,
resumable state and TensorBoard logs. ``cxr-tf train`` (:mod:`cxr_tf.training.train`), a
keras-tuner trial (:mod:`cxr_tf.search.tune`), a federated site and the coordinator
(:mod:`cxr_tf.federated`) and both phases of self-training (:mod:`cxr_tf.training.selftrain`)
all train through it.
"""

from __future__ import annotations

import logging
import math
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from cxr_tf import __version__
from cxr_tf.core import atomic
from cxr_tf.core.errors import CxrConfigError
from cxr_tf.models.rundir import CONFIG, SPLIT_SUMMARY, RunDir
from cxr_tf.records.reader import RecordsDir
from cxr_tf.training.config import TrainConfig
from cxr_tf.vocab.findings import IGNORE, metric_targets, policies, train_targets

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
    records.check_shards("train", "val")        # sizes: a truncated copy is refused before anything starts
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


@dataclass
class ValTargets:
    """The validation split's targets: the training encoding (for val_loss) and the certain
    labels (for AUROC)."""

    loss: object
    metric: object


class Session:
    """A resolved config and its records, and the parts of training built from them (see the
    module doc). ``records=False``: a model-only session (a federated coordinator without held-out
    records), which can build the model but has no data; ``check=False``: records that are only
    scored, not trained on (no training split needed)."""

    def __init__(self, config: TrainConfig, records: RecordsDir | bool | None = None, check: bool = True):
        self.cfg = config if config.is_resolved() else config.resolved()
        if records is False:
            self.records = None
        else:
            self.records = records if isinstance(records, RecordsDir) else RecordsDir(self.cfg.records)
            if check:
                check_records(self.cfg, self.records)
        self._strategy, self._configured = None, False

    def configure(self) -> None:
        """TensorFlow's start-up settings for this config (:func:`configure_tf`), once, before
        the first model is built."""
        if not self._configured:
            configure_tf(self.cfg)
            self._configured = True

    # ---- model
    @property
    def strategy(self):
        """The run's ``tf.distribute`` strategy (built on first use)."""
        if self._strategy is None:
            from cxr_tf.training.distribute import strategy_for
            self._strategy = strategy_for(self.cfg.strategy)
        return self._strategy

    def multiclass_findings(self) -> list[str]:
        """The findings this config trains with U-MultiClass."""
        return [f for f, p in zip(self.cfg.findings, policies(self.cfg.uncertain, self.cfg.findings))
                if p == "multiclass"]

    def loss(self):
        """The named loss (with U-MultiClass findings, the multiclass loss on the logits);
        ``weighted_bce`` counts positives on the training split after the label policy (so U-Ones
        positives count as positives)."""
        from cxr_tf.models import losses

        cfg, multiclass = self.cfg, self.multiclass_findings()
        if multiclass:
            return losses.MulticlassLoss([f in multiclass for f in cfg.findings])
        kwargs = {}
        if cfg.loss == "weighted_bce":
            if self.records is None:
                raise CxrConfigError("weighted_bce needs the records to count positives", key="loss")
            y = split_targets(self.records, "train", cfg)
            kwargs = {"positives": ((y > 0.5) & (y != IGNORE)).sum(axis=0).tolist(),
                      "totals": (y != IGNORE).sum(axis=0).tolist()}
        elif cfg.loss == "focal":
            kwargs = {"alpha": cfg.focal_alpha, "gamma": cfg.focal_gamma}
        return losses.get(cfg.loss, **kwargs)

    def optimizer(self):
        """Adam with the fused TensorFlow kernel (same update as Keras' Adam)."""
        from cxr_tf.models.optimizers import FusedAdam
        return FusedAdam(self.cfg.lr, beta_1=self.cfg.beta_1, beta_2=self.cfg.beta_2)

    def model(self, compile: bool = True):
        """The training model of the config: the model itself, or with U-MultiClass findings its
        logits (see :func:`cxr_tf.models.training_model`; :func:`cxr_tf.models.contract_model` gives
        it back). With ``compile`` it is compiled once and its optimizer built (no variable is
        created inside the first traced step); call inside :attr:`strategy`'s scope to distribute
        it. ``compile=False`` leaves compiling to a caller that wraps it (a federated site)."""
        import keras

        from cxr_tf.models import build_model, training_model

        self.configure()
        cfg, rec = self.cfg, self.records
        model = build_model(cfg.preset, backbone=cfg.backbone, head=cfg.head, findings=cfg.findings,
                            weights=cfg.weights, image_size=cfg.image_size, transition_depth=cfg.transition_depth,
                            lse_r=cfg.lse_r, dropout=cfg.dropout, normalization=cfg.normalization,
                            stored_size=rec.stored_size if rec else None, aspect=rec.aspect if rec else "pad",
                            multiclass=self.multiclass_findings())
        if cfg.bn_momentum is not None:  # e.g. 0.9 = PyTorch's BN momentum 0.1 (CheXNet's framework)
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = cfg.bn_momentum
        model = training_model(model)
        if compile:
            self.compile(model)
        return model

    def compile(self, model, variables=None, jit_compile=None):
        """Compile ``model`` with this session's optimizer and loss and build the optimizer over
        ``variables`` (default: the model's trainable variables); ``jit_compile`` defaults to the
        config's."""
        from cxr_tf.training.step import use_flat_train_function

        model.compile(optimizer=self.optimizer(), loss=self.loss(),
                      jit_compile=self.cfg.jit_compile if jit_compile is None else jit_compile)
        model.optimizer.build(model.trainable_variables if variables is None else variables)
        use_flat_train_function(model)   # one traced function per step, not Keras' two nested ones
        return model

    # ---- data
    def datasets(self, soft_targets=None, seed: int | None = None):
        """(training dataset, validation pixels dataset, :class:`ValTargets`); ``soft_targets`` for
        the ``selftrained`` findings (see :mod:`cxr_tf.training.selftrain`); ``seed`` another
        shuffling and augmentation seed (a federated round)."""
        import tensorflow as tf

        from cxr_tf.pipeline import Augment, make_dataset

        cfg, records = self.cfg, self.records
        augment = Augment(cfg.hflip, tuple(cfg.crop_scale) if cfg.crop_scale else None, cfg.rotation,
                          cfg.brightness, cfg.contrast)
        common = dict(image_size=cfg.image_size, uncertain=cfg.uncertain, blank=cfg.blank,
                      findings=cfg.findings, batch_size=cfg.batch_size)
        if cfg.data_service and isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise CxrConfigError("a tf.data service feeds one trainer (one or several GPUs); with several training "
                                 "workers each would read a whole epoch", key="data_service", fix="none")
        train_ds = make_dataset(records.path, "train", augment=augment, seed=cfg.seed if seed is None else seed,
                                deterministic=cfg.deterministic, drop_remainder=True,
                                shuffle_buffer=cfg.shuffle_buffer, soft_targets=soft_targets,
                                repeat=cfg.steps_per_epoch is not None or cfg.checkpoint_every is not None,
                                data_service=cfg.data_service, **common)
        val_ds = make_dataset(records.path, "val", training=False, **common).map(lambda x, y: x)
        targets = ValTargets(split_targets(records, "val", cfg), split_targets(records, "val", cfg, True))
        return train_ds, val_ds, targets

    def schedule(self) -> tuple[int, int | None]:
        """(Keras epochs, steps per Keras epoch): the run's epochs, or with ``checkpoint_every`` as
        many checkpoint intervals of that many steps as the epochs hold."""
        cfg = self.cfg
        if cfg.checkpoint_every is None:
            return cfg.epochs, cfg.steps_per_epoch
        per_epoch = cfg.steps_per_epoch or max(1, self.records.splits["train"]["images"] // cfg.batch_size)
        return max(1, math.ceil(cfg.epochs * per_epoch / cfg.checkpoint_every)), cfg.checkpoint_every

    def callbacks(self, model, val_ds, val_targets: ValTargets, run: Path | None = None,
                  state: dict | None = None, chief: bool = True):
        """Our callbacks, in the order they must run: validation metrics first (they put val_loss
        and AUROC into the logs), the plateau rule (unless the schedule is constant), then (with a
        run directory) checkpoints, timing and TensorBoard. Returns (callbacks, timer)."""
        import keras

        from cxr_tf.training.callbacks import AtomicCheckpoint, ResumablePlateau, StepTimer, ValidationMetrics

        cfg = self.cfg
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

    def fit(self, model, train_ds, callbacks: list, **kwargs):
        """``model.fit`` over the session's schedule (``kwargs`` override it, e.g. ``epochs``); a
        corrupt shard stops it with one error naming the shard (:func:`cxr_tf.pipeline.shard_errors`)."""
        from cxr_tf.pipeline import shard_errors

        epochs, steps = self.schedule()
        options = {"epochs": epochs, "steps_per_epoch": steps, "verbose": self.cfg.verbose, "shuffle": False,
                   **kwargs}
        with shard_errors(self.records.path if self.records else self.cfg.records, ("train", "val")):
            return model.fit(train_ds, callbacks=callbacks, **options)

    # ---- a run directory
    def run(self, state: dict | None = None, callbacks: list | None = None, soft_targets=None,
            fresh_start_ok: bool = True) -> dict:
        """Train into the config's run directory (``out``): build the model (or load the
        checkpoint of ``state``), write the run directory's config once everything is built, fit
        with our callbacks and then ``callbacks``, return the final state. ``fresh_start_ok``:
        a run directory left by a start that completed no epoch is cleared and started again."""
        from cxr_tf.models import load_checkpoint
        from cxr_tf.training.distribute import is_chief, prepare_fit
        from cxr_tf.training.step import use_flat_train_function

        cfg, records = self.cfg, self.records
        run = Path(cfg.out)
        self.configure()
        with self.strategy.scope():
            if state:
                model = load_checkpoint(run / state["checkpoint"])
                model.optimizer.build(model.trainable_variables)
                use_flat_train_function(model)
                log.info("resuming %s from epoch %d", run, state["epoch"])
            else:
                model = self.model()
        train_ds, val_ds, val_targets = self.datasets(soft_targets)
        chief = is_chief()
        if chief and not state:
            if (run / CONFIG).is_file() and fresh_start_ok:
                log.warning("%s: no epoch had completed; starting it again", run)
                for stale in ("logs", "checkpoints"):
                    shutil.rmtree(run / stale, ignore_errors=True)
            run.mkdir(parents=True, exist_ok=True)
            atomic.write_json(run / SPLIT_SUMMARY, {
                "records": str(records.path.resolve()), "prepare_config": records.summary["config"],
                "counts": records.summary["counts"], "splits": records.splits})
            atomic.write_json(run / "environment.json", environment())
            atomic.write_json(run / CONFIG, cfg.to_dict())
        ours, timer = self.callbacks(model, val_ds, val_targets, run, state, chief)
        epochs, _ = self.schedule()
        initial = state["epoch"] if state else 0
        if initial >= epochs:
            log.info("%s already trained for %d epochs", run, initial)
            return state
        prepare_fit(model, train_ds, self.strategy)
        self.fit(model, train_ds, ours + list(callbacks or []), initial_epoch=initial)
        final = RunDir(run).state or {}
        final["timing"] = timer.result()
        return final


def environment() -> dict:
    """Library versions and devices, for the audit trail."""
    import keras
    import tensorflow as tf
    return {"cxr_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "devices": [d.name for d in tf.config.list_logical_devices()]}
