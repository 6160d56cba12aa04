"""Streaming float-vs-quantized statistics of one tensor, and where an activation quantizer saturates.

Definitions (``f`` float, ``q`` quantized, ``e = q - f``, sums over every
element of every sample):

- ``rmse = sqrt(mean e^2)``; ``rel_l2_err = ||e|| / ||f||`` (0 when ``e`` is 0);
- ``snr_db = 10 log10(sum f^2 / sum e^2)`` (+inf when ``e`` is 0);
- ``cosine = sum f q / (||f|| ||q||)`` (1 when both are 0, NaN when one is);
- ``frac_equal``: elements with ``q == f`` exactly;
- ``frac_saturated`` (outputs of an activation quantizer only): elements equal
  to the quantizer's lowest or highest output value, computed from its
  configuration (:func:`quantizer_bounds`), since QKeras's own
  ``min()``/``max()`` return range hints, not output values. A relu's floor 0
  is its function, not saturation, and does not count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import QExtractError
from ..quantizers import output_bounds


def quantizer_bounds(quantizer: Any) -> tuple[float | None, float | None] | None:
    """The lowest and highest value an activation quantizer outputs, from its config.

    A side is None where reaching it is not saturation (a relu's 0). Returns
    None where the bounds are unknown or meaningless. Each quantizer's registry
    entry knows its own (:meth:`qextract.quantizers.QuantizerEntry.bounds`).
    """
    return output_bounds(quantizer)


class ErrorStats:
    """Streaming float-vs-quantized statistics of one tensor.

    Keeps only sums (float64), so memory does not depend on the number of
    samples; :meth:`update` with the data in any batching gives the same
    result up to float64 rounding. Mean and variance use Chan's pairwise
    update, which does not cancel catastrophically like ``sumsq - n mean^2``.
    """

    def __init__(self, bounds: tuple[float | None, float | None] | None = None):
        self.bounds = bounds
        self.samples = 0
        self.n = 0
        self.f_mean = 0.0
        self.f_m2 = 0.0
        self.f_min = math.inf
        self.f_max = -math.inf
        self.q_min = math.inf
        self.q_max = -math.inf
        self.sum_abs_e = 0.0
        self.max_abs_e = 0.0
        self.sum_e2 = 0.0
        self.sum_f2 = 0.0
        self.sum_q2 = 0.0
        self.sum_fq = 0.0
        self.equal = 0
        self.saturated = 0

    def update(self, f: np.ndarray, q: np.ndarray) -> None:
        """Add one batch: ``f`` float outputs, ``q`` quantized outputs, same shape."""
        if f.shape != q.shape:
            raise QExtractError(f"float output shape {f.shape} differs from quantized output shape {q.shape}")
        if f.size == 0:
            return
        self.samples += f.shape[0] if f.ndim else 1
        self.equal += int(np.count_nonzero(f == q))
        if self.bounds is not None:
            lo, hi = self.bounds  # distinct values: an element equals at most one of them
            for bound in {b for b in (lo, hi) if b is not None}:
                self.saturated += int(np.count_nonzero(q == np.float32(bound)))
        # Extremes of the float32 outputs as they are (widening is exact), sums in float64.
        self.f_min = min(self.f_min, float(f.min()))
        self.f_max = max(self.f_max, float(f.max()))
        self.q_min = min(self.q_min, float(q.min()))
        self.q_max = max(self.q_max, float(q.max()))
        f = f.astype(np.float64).ravel()
        q = q.astype(np.float64).ravel()
        nb = f.size
        # einsum, not np.dot: BLAS would start its own threads beside TensorFlow's on the same
        # cores, which made single batches up to 50x slower (benchmarks/RESULTS.md).
        mean_b = float(f.sum()) / nb
        d = f - mean_b
        m2_b = float(np.einsum("i,i->", d, d))
        total = self.n + nb
        delta = mean_b - self.f_mean
        self.f_mean += delta * nb / total
        self.f_m2 += m2_b + delta * delta * self.n * nb / total
        self.n = total
        e = np.subtract(q, f, out=d)  # d is used up
        self.sum_e2 += float(np.einsum("i,i->", e, e))
        abs_e = np.abs(e, out=e)
        self.sum_abs_e += float(abs_e.sum())
        self.max_abs_e = max(self.max_abs_e, float(abs_e.max()))
        self.sum_f2 += float(np.einsum("i,i->", f, f))
        self.sum_q2 += float(np.einsum("i,i->", q, q))
        self.sum_fq += float(np.einsum("i,i->", f, q))

    def metrics(self) -> dict[str, float]:
        """The derived statistics (NaN everywhere if nothing was added)."""
        nan = math.nan
        if self.n == 0:
            keys = ("float_min", "float_max", "float_mean", "float_std", "quant_min", "quant_max",
                    "mean_abs_err", "max_abs_err", "rmse", "rel_l2_err", "snr_db", "cosine",
                    "frac_equal", "frac_saturated")  # fmt: skip
            return dict.fromkeys(keys, nan)
        n = self.n
        if self.sum_e2 == 0.0:
            rel, snr = 0.0, math.inf
        elif self.sum_f2 == 0.0:
            rel, snr = math.inf, -math.inf
        else:
            rel = math.sqrt(self.sum_e2 / self.sum_f2)
            snr = 10.0 * math.log10(self.sum_f2 / self.sum_e2)
        if self.sum_f2 == 0.0 and self.sum_q2 == 0.0:
            cosine = 1.0
        elif self.sum_f2 == 0.0 or self.sum_q2 == 0.0:
            cosine = nan
        else:
            cosine = self.sum_fq / math.sqrt(self.sum_f2 * self.sum_q2)
        return {
            "float_min": self.f_min,
            "float_max": self.f_max,
            "float_mean": self.f_mean,
            "float_std": math.sqrt(max(self.f_m2, 0.0) / n),
            "quant_min": self.q_min,
            "quant_max": self.q_max,
            "mean_abs_err": self.sum_abs_e / n,
            "max_abs_err": self.max_abs_e,
            "rmse": math.sqrt(self.sum_e2 / n),
            "rel_l2_err": rel,
            "snr_db": snr,
            "cosine": cosine,
            "frac_equal": self.equal / n,
            "frac_saturated": self.saturated / n if self.bounds is not None else nan,
        }
