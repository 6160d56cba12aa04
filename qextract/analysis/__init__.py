"""Analysis: how far the quantized model is from its float twin.

``twin`` builds the float twin of a QKeras model; ``taps`` reads every layer's output in one pass;
``data`` reads the input data; ``report`` computes the per-layer and per-tensor error tables; ``plot``
draws them.
"""
