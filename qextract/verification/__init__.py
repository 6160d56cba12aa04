"""Verification: read an export back and prove it.

``verifier`` checks the folder (paths, hashes, coverage, decode) and every tensor against the manifest;
``recomputation`` recomputes each layer from the exported files with independent NumPy references
(``reference``, ``reference_activations``) and compares them with the Keras layer (``layer_copy``).
"""
