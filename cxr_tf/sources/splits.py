"""Patient-level splits. Every function returns the manifest with a ``split`` column and asserts
that no patient appears in two splits."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from cxr_tf.core.errors import CxrConfigError, CxrDataError, LeakageError
from cxr_tf.sources.manifest import assert_patient_disjoint

METHODS = ("official", "random")


def _shuffled_patients(patients: Iterable, seed: int) -> np.ndarray:
    """Unique patients in a seed-determined order that does not depend on row order."""
    unique = np.array(sorted(set(map(str, patients))), dtype=object)
    return unique[np.random.default_rng(seed).permutation(len(unique))]


def random_split(frame: pd.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> pd.DataFrame:
    """Patient-level random split into train/val/test with the given patient fractions."""
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise CxrConfigError(f"must be three non-negative numbers summing to 1, got {fractions}",
                             key="fractions")
    patients = _shuffled_patients(frame["patient"], seed)
    cuts = np.round(np.cumsum(fr)[:2] * len(patients)).astype(int)
    assign = {}
    for name, group in zip(("train", "val", "test"), np.split(patients, cuts)):
        assign.update(dict.fromkeys(group, name))
    out = frame.assign(split=frame["patient"].astype(str).map(assign))
    assert_patient_disjoint(out, where="random split")
    return out


def official_split(frame: pd.DataFrame, train_val: Iterable[str], test: Iterable[str], *,
                   val_fraction: float = 0.1, seed: int = 0,
                   lists_source: str | None = None) -> pd.DataFrame:
    """The dataset's official train_val/test lists; validation patients carved out of train_val.

    Every image must be on exactly one list. Raises :class:`LeakageError` if the lists themselves
    share patients."""
    if not 0.0 <= val_fraction < 1.0:
        raise CxrConfigError(f"must be in [0, 1), got {val_fraction}", key="val_fraction")
    train_val, test = set(train_val), set(test)
    both = train_val & test
    if both:
        raise CxrDataError(lists_source, f"{len(both)} image(s) on both official lists, "
                                         f"e.g. {sorted(both)[:3]}")
    ids = frame["image_id"]
    in_tv, in_test = ids.isin(train_val), ids.isin(test)
    neither = ~(in_tv | in_test)
    if neither.any():
        raise CxrDataError(lists_source, f"{int(neither.sum())} image(s) on neither official list, "
                                         f"e.g. {list(ids[neither][:3])}")
    split = pd.Series(np.where(in_test, "test", "train"), index=frame.index, dtype=object)
    tv_patients = _shuffled_patients(frame.loc[in_tv, "patient"], seed)
    n_val = int(round(val_fraction * len(tv_patients)))
    val_patients = set(tv_patients[:n_val])
    split[in_tv & frame["patient"].astype(str).isin(val_patients)] = "val"
    out = frame.assign(split=split)
    try:
        assert_patient_disjoint(out, where=lists_source or "official lists")
    except LeakageError as exc:
        raise LeakageError(f"{exc} (the official train_val and test lists share patients)") from None
    return out


def make_split(frame: pd.DataFrame, method: str, **kwargs) -> pd.DataFrame:
    """Dispatch on a split name: ``"official"`` or ``"random"``."""
    if method == "random":
        return random_split(frame, **kwargs)
    if method == "official":
        return official_split(frame, **kwargs)
    raise CxrConfigError(f"unknown split method {method!r}", key="split", choices=METHODS)
