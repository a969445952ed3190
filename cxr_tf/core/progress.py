"""Progress bars for work a user waits for (tqdm; quiet when not attached to a terminal unless asked)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(total=None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm bar on stderr over ``total`` items, or over ``total`` itself when it is iterable.
    Set ``CXR_TF_PROGRESS=0`` to silence, ``=1`` to force it on."""
    if total is not None and not isinstance(total, int):
        kwargs["iterable"], total = total, None
    flag = os.environ.get("CXR_TF_PROGRESS")
    disable = (flag == "0") if flag is not None else not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                mininterval=0.5, **kwargs)
