"""Analysis: how far the quantized model is from its float twin.

``twin`` builds the float twin of a QKeras model (``float_activations``: the float form of each quantized
activation; ``twin_check``: a user's own float model checked against it); ``taps`` reads every layer's
output in one pass; ``data`` reads the input data; ``report`` computes the per-layer error table from
``statistics`` (streaming sums), ``weights`` the per-tensor table, both as ``records`` rendered to
DataFrames; ``plot`` draws them.
"""
