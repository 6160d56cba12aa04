"""Verification: read an export back and prove it.

- ``readback`` reads the folder (paths, hashes, every file's codes agreeing, ``codes x scale``);
- ``verifier`` (:func:`verify`) checks coverage, puts each tensor back into Keras's axes and compares each layer;
- ``recomputation`` recomputes a layer by its kind's route: feed-forward and weights here, recurrent in
  ``recurrence``; ``outcome`` holds what the routes share (input drawn, verdict, Outcome);
- ``reference`` and ``reference_activations`` are the independent NumPy references, ``layer_copy`` the
  Keras side.
"""
