"""The hand-over of a train run split across invocations: what the fits leave for the tuning workers and finish.

A run of one symbol at one time may be split (the AWS daily state machine does, when several workers tune):
*prepare* fits the fold models and writes this hand-over, *tune* workers read the policy windows from it and
join the shared studies, *finish* reads the fold models and predictions back, collects the studies and
publishes. Everything lives under ``models/{pair}/tuning/{time}/`` (``time`` the run's ``until``, UTC seconds):

* ``windows.npz`` - numpy's npz (no pickle: ``allow_pickle`` is off when it is read). Per validation fold
  ``k``: ``f{k}_time`` (bar open times, int64 in the index's unit), ``f{k}_open/high/low/close`` and
  ``f{k}_funding`` (the rate due at each bar's open, as ``funding_at_bars`` gives it: empty where none). Per candidate label ``i``:
  ``l{i}_probs`` ``[n_bars, 3]`` and ``l{i}_vol`` ``[n_bars]``, the fold models' predictions over every bar
  of the run (NaN outside the validation folds).
* ``l{i}-f{k}.{artifact}`` - candidate ``i``'s fold ``k`` model, as the model kind saves it.
* ``manifest.json`` - written last, so a hand-over is visible once complete: the run's training key, the
  study names, the fold spans, the model kind (``model_kind``; ``ensemble``: its members per fold, 1 when
  absent; ``window``: the trailing-window bars it reads after the features, 0 when absent), the models'
  records, each candidate's calibration (``calibrations``: the isotonic maps fitted on its folds' validation
  rows, ``None`` without), the sha256 of every object above.
  The predictions are stored raw; tune and finish apply the calibration, as ``train`` tunes on it.

Every object is checked against the manifest's sha256 when read; a missing or altered one is a ``DataError``
that names its key.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.core.evaluation import PolicyWindow
from scalpbot.errors import DataError, ObjectNotFound
from scalpbot.ports import Store
from scalpbot.state.releases import pair_of, sha256_hex

__all__ = [
    "HANDOVER_VERSION",
    "Handover",
    "handover_prefix",
    "read_handover",
    "read_manifest",
    "write_handover",
]

HANDOVER_VERSION = 1
_PRICES = ("open", "high", "low", "close")


def handover_prefix(symbol: str, until: datetime) -> str:
    """Return the store prefix of the hand-over of ``symbol``'s run on the bars before ``until`` (UTC)."""
    stamp = pd.Timestamp(until).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")
    return f"models/{pair_of(symbol)}/tuning/{stamp}/"


@dataclass(frozen=True)
class Handover:
    """What the fits of a run hand to the tuning workers and to finish.

    ``folds``: each validation fold's ``[start, stop)`` bar positions in the run's bars; ``windows[k]``: fold
    ``k``'s bars (``open/high/low/close`` columns, UTC index) with ``funding[k]`` per bar; ``probs[i]`` and
    ``vol[i]``: candidate ``i``'s predictions over every bar; ``models[i][k]``: its fold ``k`` model's bytes;
    ``meta``: the run's record (``training_key``, ``studies``, ``records``, ``hyperparams``, ...).
    """

    meta: Mapping[str, Any]
    folds: tuple[tuple[int, int], ...]
    windows: tuple[pd.DataFrame, ...]
    funding: tuple[np.ndarray, ...]
    probs: tuple[np.ndarray, ...]
    vol: tuple[np.ndarray, ...]
    models: tuple[tuple[bytes, ...], ...]

    @property
    def training_key(self) -> str:
        """Return the training key of the run that wrote it."""
        return str(self.meta["training_key"])

    @property
    def studies(self) -> tuple[str, ...]:
        """Return the name of each candidate label's study, candidate 0 first."""
        return tuple(str(name) for name in self.meta["studies"])

    def calibration(self, candidate: int) -> dict[str, Any] | None:
        """Return the manifest record of the calibration candidate ``candidate``'s policy is tuned through
        (``None``: its probabilities are tuned as the models output them)."""
        records = self.meta.get("calibrations") or [None] * len(self.studies)
        record = records[candidate]
        return None if record is None else dict(record)

    def policy_windows(
        self, candidate: int, period: str, probs: np.ndarray | None = None
    ) -> list[PolicyWindow]:
        """Return candidate ``candidate``'s policy windows, one per fold, scored per ``period`` ("1h").

        ``probs``: the class probabilities to tune on over every bar of the run (its calibrated predictions),
        instead of the fold models' raw ones.
        """
        p = self.probs[candidate] if probs is None else probs
        return [
            PolicyWindow.from_frame(bars, p[a:b], self.vol[candidate][a:b], period=period)
            for bars, (a, b) in zip(self.windows, self.folds, strict=True)
        ]


def write_handover(
    store: Store,
    prefix: str,
    meta: Mapping[str, Any],
    folds: Sequence[tuple[int, int]],
    bars: pd.DataFrame,
    funding: Sequence[np.ndarray],
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    models: Sequence[Sequence[bytes]],
    artifact: str,
) -> str:
    """Write the hand-over under ``prefix`` (windows, models, then the manifest); return the manifest's key.

    ``bars``: the run's bars (the folds' rows are kept); ``funding[k]``: fold ``k``'s rate per bar;
    ``predictions[i]``: candidate ``i``'s ``(probs, vol)``; ``models[i][k]``: its fold models' bytes.
    """
    arrays: dict[str, np.ndarray] = {}
    for k, (a, b) in enumerate(folds):
        window = bars.iloc[a:b]
        arrays[f"f{k}_time"] = pd.DatetimeIndex(window.index).asi8
        for name in _PRICES:
            arrays[f"f{k}_{name}"] = window[name].to_numpy(dtype=np.float64)
        arrays[f"f{k}_funding"] = np.asarray(funding[k], dtype=np.float64)
    for i, (probs, vol) in enumerate(predictions):
        arrays[f"l{i}_probs"], arrays[f"l{i}_vol"] = probs, vol
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    windows = buffer.getvalue()
    objects: dict[str, str] = {}
    store.put(prefix + "windows.npz", windows)
    objects["windows.npz"] = sha256_hex(windows)
    for i, candidate in enumerate(models):
        for k, data in enumerate(candidate):
            name = f"l{i}-f{k}.{artifact.rpartition('.')[2]}"
            store.put(prefix + name, data)
            objects[name] = sha256_hex(data)
    manifest = {
        **meta,
        "version": HANDOVER_VERSION,
        "time_unit": str(pd.DatetimeIndex(bars.index).unit),
        "folds": [list(span) for span in folds],
        "candidates": len(predictions),
        "objects": objects,
    }
    key = prefix + "manifest.json"
    store.put(key, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return key


def read_manifest(store: Store, prefix: str) -> dict[str, Any] | None:
    """Return the hand-over manifest under ``prefix``, or ``None`` when there is none (not prepared yet)."""
    key = prefix + "manifest.json"
    try:
        data = store.get(key).data
    except ObjectNotFound:
        return None
    try:
        manifest = json.loads(data)
    except ValueError as e:
        raise DataError(f"the tuning hand-over {key} is not JSON ({e}); run the prepare phase again") from e
    if not isinstance(manifest, dict) or manifest.get("version") != HANDOVER_VERSION:
        raise DataError(f"the tuning hand-over {key} is not of version {HANDOVER_VERSION}; prepare again")
    return manifest


def read_handover(store: Store, prefix: str, *, models: bool = True) -> Handover:
    """Read and verify the hand-over under ``prefix``; ``models`` off: the windows only (a tuning worker).

    ``DataError`` naming the key when the manifest or an object is missing or does not match its sha256.
    """
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise DataError(
            f"no tuning hand-over at {prefix}manifest.json: run the prepare phase for this symbol and time first"
        )
    objects: Mapping[str, str] = manifest["objects"]
    arrays = _npz(_verified(store, prefix, "windows.npz", objects))
    folds = tuple((int(a), int(b)) for a, b in manifest["folds"])
    unit = str(manifest["time_unit"])
    windows, funding = [], []
    for k in range(len(folds)):
        index = pd.DatetimeIndex(arrays[f"f{k}_time"].astype(f"datetime64[{unit}]")).tz_localize("UTC")
        windows.append(pd.DataFrame({name: arrays[f"f{k}_{name}"] for name in _PRICES}, index=index))
        funding.append(arrays[f"f{k}_funding"])
    n = int(manifest["candidates"])
    fold_models: list[tuple[bytes, ...]] = []
    if models:
        for i in range(n):
            names = [name for name in objects if name.startswith(f"l{i}-f")]
            names.sort(key=lambda name: int(name.split("-f")[1].split(".")[0]))
            fold_models.append(tuple(_verified(store, prefix, name, objects) for name in names))
    return Handover(
        meta=manifest,
        folds=folds,
        windows=tuple(windows),
        funding=tuple(funding),
        probs=tuple(arrays[f"l{i}_probs"] for i in range(n)),
        vol=tuple(arrays[f"l{i}_vol"] for i in range(n)),
        models=tuple(fold_models),
    )


def _verified(store: Store, prefix: str, name: str, objects: Mapping[str, str]) -> bytes:
    key = prefix + name
    try:
        data = store.get(key).data
    except ObjectNotFound as e:
        raise DataError(f"the tuning hand-over object {key} is missing; run the prepare phase again") from e
    if sha256_hex(data) != objects[name]:
        raise DataError(
            f"the tuning hand-over object {key} does not match its sha256 in {prefix}manifest.json "
            "(altered or partly written); run the prepare phase again"
        )
    return data


def _npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
