"""The whole network in integers: simulation, golden vectors and accumulator widths.

- :mod:`.simulation`: :func:`simulate`, :func:`simulate_batches`, :class:`Simulation`;
- :mod:`.comparison`: the per-layer comparison with QKeras's own forward pass;
- :mod:`.plan`: the model read once into steps, every unsupported layer refused by name;
- :mod:`.contraction`, :mod:`.normalization`, :mod:`.pooling`, :mod:`.shaping`: the steps;
- :mod:`.signal`, :mod:`.weights`, :mod:`.kernels`, :mod:`.quantize`, :mod:`.input_format`: exact
  arithmetic on codes and scales, integer weights, the registry's requantization, input grids;
- :mod:`.result`: :class:`LayerResult` and :class:`AccumulatorRange`, plain data;
- :mod:`.vectors`, :mod:`.accumulators`: golden test vectors and accumulator widths;
- :mod:`.golden`: both for a whole model, from its simulation (the bounds checked against what it observed).
"""

from .result import AccumulatorRange, LayerResult
from .simulation import Simulation, simulate, simulate_batches

__all__ = ["AccumulatorRange", "LayerResult", "Simulation", "simulate", "simulate_batches"]
