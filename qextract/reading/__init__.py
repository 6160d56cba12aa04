"""Reading: a model (a file or the caller's in-memory model) into an :class:`~qextract.tensor.Extraction`.

``loading`` opens model files without running code from them unless trusted; ``nested`` walks wrapper
and nested layers; ``extraction`` reads every layer's exact values, codes, scales and number formats
through the layer and quantizer registries, ``geometry`` each layer's settings and shapes; ``summary``
turns an extraction into the ``inspect`` table.
"""
