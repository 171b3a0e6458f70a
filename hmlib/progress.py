"""Progress of long steps (bootstrap batches, CV folds, grid tiles) on the console, not in the report.

Under ``hmlib run`` a stage executes in a notebook kernel whose own output goes into the executed
notebook; progress bars are written to the kernel process's inherited standard error instead, so
they appear on the terminal that started the run and never in the report or the notebook. In an
interactive notebook the bar shows under the cell. Set ``HMLIB_PROGRESS=0`` to silence it.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["track"]

T = TypeVar("T")


def _label(desc: str) -> str:
    """``desc`` prefixed once with the running stage's name (``HMLIB_STAGE``).

    Callers may already name their stage ("spatial: metals"); the prefix is then not repeated.
    """
    stage = os.environ.get("HMLIB_STAGE", "")
    if not stage or desc == stage or desc.startswith(f"{stage}:") or desc.startswith(f"{stage} "):
        return desc
    return f"{stage}: {desc}"


def track(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate over ``iterable`` showing a progress bar labelled ``desc``.

    Parameters
    ----------
    iterable : the items.
    desc : what is being done ("bootstrap", "CV folds", "grid tiles").
    total : number of items when ``iterable`` has no length.
    unit : unit of one item.

    Returns
    -------
    An iterator over the same items.
    """
    mode = os.environ.get("HMLIB_PROGRESS", "auto")
    if mode == "0":
        yield from iterable
        return
    if os.environ.get("HMLIB_PIPELINE") == "1":  # inside `hmlib run`: the console, not the notebook
        kw = dict(file=sys.__stderr__, desc=f"  {_label(desc)}", leave=False, mininterval=2.0, ascii=True,
                  dynamic_ncols=False, ncols=90)
        from tqdm import tqdm as plain

        yield from plain(iterable, total=total, unit=unit, **kw)
    else:
        yield from tqdm(iterable, total=total, unit=unit, desc=desc, leave=False, mininterval=1.0)
