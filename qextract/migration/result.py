"""The outcome of a migration: per-tensor rows, the layers that could not be migrated, the file written or None."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UnsupportedError, VerificationError
from .translate import LayerFailure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LayerFailure", "MigrationResult"]


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`qextract.migrate` did.

    ``table``: one row per tensor (:func:`qextract.diff`'s columns, A the QKeras 0.9 reference,
    B the migrated model), plus one per quantized activation (``conv1/(activation)``), a row per
    layer whose geometry differs, and ``raw_differ`` / ``raw_max_ulp``: the raw float weights that
    differ (the reference from the model file only). ``failures``: every layer that could not be
    migrated, with why (then ``table`` is empty: nothing was built to compare). ``written``: the
    new model's path, or None when anything failed or differs (nothing is written then).
    ``reference`` says what was compared against.
    """

    old: Path
    written: Path | None
    reference: str
    table: pd.DataFrame
    failures: tuple[LayerFailure, ...] = ()
    header: tuple[str, ...] = ()

    @property
    def migrated(self) -> bool:
        """True when every layer migrated, every tensor matches, and the new model was written."""
        return self.written is not None

    @property
    def differences(self) -> pd.DataFrame:
        """The rows that are not the same."""
        return self.table[self.table["status"] != "same"].reset_index(drop=True)

    @property
    def exit_code(self) -> int:
        """The command's exit code: 0 written, 4 a layer could not be migrated, 9 a tensor differs."""
        if self.failures:
            return UnsupportedError.exit_code
        return 0 if self.written is not None else VerificationError.exit_code

    @property
    def raw_last_bit(self) -> list[str]:
        """Tensors whose codes and scales are equal but whose raw floats differ (by at most a few units in the last
        place): qkeras-v3 folds a batch norm with ``1/sqrt`` where QKeras 0.9 used ``rsqrt``."""
        if "raw_differ" not in self.table:
            return []
        same = self.table[(self.table["status"] == "same") & (self.table["raw_differ"].fillna(0) > 0)]
        return list(same["tensor"])

    def __repr__(self) -> str:
        if self.failures:
            what = f"{len(self.failures)} layer(s) could not be migrated: " + ", ".join(f.layer for f in self.failures)
        else:
            n = int((self.table["status"] != "same").sum())
            what = f"{n} of {len(self.table)} rows differ" + (f"; wrote {self.written}" if self.written else "")
        return f"MigrationResult('{self.old}': {what})"
