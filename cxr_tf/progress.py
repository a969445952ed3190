"""Progress bars for work a user waits for (tqdm; quiet when not attached to a terminal unless asked)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", **kwargs):
    """A tqdm bar on stderr. Set ``CXR_TF_PROGRESS=0`` to silence, ``=1`` to force it on."""
    flag = os.environ.get("CXR_TF_PROGRESS")
    disable = (flag == "0") if flag is not None else not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                mininterval=0.5, **kwargs)
