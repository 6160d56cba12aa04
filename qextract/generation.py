"""The two QKeras generations qextract supports, and everything that differs between them.

QKeras 0.9 runs on the legacy Keras 2 package ``tf-keras``; ``qkeras-v3``
(the maintained line, same layer and quantizer names) runs on Keras 3. Both
install a package named ``qkeras``, so one environment holds one of them:
:func:`installed` asks the package metadata which, before TensorFlow is
imported (legacy Keras must be selected before that import, Keras 3 must not
be). Every behaviour that differs between the two is a method of the one
:class:`Generation` object describing the installed stack
(:func:`qextract._keras.generation`); the rest of the package asks it
instead of testing versions or Keras classes.

This module imports nothing heavy at import time: it is read by
:mod:`qextract._keras` while ``import qextract`` runs. Its methods take
Keras objects and use only their attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import metadata
from typing import Any, ClassVar

from .errors import UnsupportedError

__all__ = ["KERAS3", "LEGACY", "AmbiguousInstall", "Generation", "installed"]

Shape = tuple[Any, ...]


class Generation(ABC):
    """One QKeras generation: where it comes from, which Keras it runs on, how its objects read.

    ``distribution`` is the package-index name that installs it, ``keras``
    the top-level package its layers subclass (``tf_keras`` or ``keras``).
    ``legacy_keras`` says whether TensorFlow must be told to use tf-keras
    (``TF_USE_LEGACY_KERAS=1``) before it is imported. ``quantizer_base``
    names (``module:class``) the class every quantizer derives from.
    """

    name: ClassVar[str]
    distribution: ClassVar[str]
    keras: ClassVar[str]
    legacy_keras: ClassVar[bool]
    quantizer_base: ClassVar[str]
    keras_major: ClassVar[int]
    """The Keras major version writing this generation's model files (their ``keras_version``)."""
    serialization: ClassVar[str]
    """The module of Keras's ``SafeModeScope`` (which lets a trusted file's lambdas be rebuilt)."""
    reads_h5_named_keras: ClassVar[bool]
    """Whether Keras reads an HDF5 model file named ``.keras`` (tf-keras does; Keras 3 wants a zip there)."""
    model_suffixes: ClassVar[tuple[str, ...]]
    """The file suffixes qextract writes a new model to (``qextract import`` / ``fcn``), preferred first."""
    example: ClassVar[str]
    """The bundled example model's file in this generation's format (:mod:`qextract.examples`)."""
    loads_savedmodel: ClassVar[bool]
    """Whether ``load_model`` reads a SavedModel folder (tf-keras does; Keras 3 only exports to one)."""

    def __repr__(self) -> str:
        return f"<QKeras generation {self.name}>"

    @property
    def label(self) -> str:
        """How messages name the installed stack: ``QKeras 0.9.0 on tf-keras``."""
        keras = "tf-keras" if self.keras == "tf_keras" else "Keras 3"
        return f"{self.distribution} {_version(self.distribution) or '?'} on {keras}"

    keras_activations: ClassVar[dict[str, str]] = {"hard_sigmoid": "keras.hard_sigmoid"}
    """Keras activation function name -> its key in :data:`qextract.verification.reference_activations.FLOAT`,
    where the two Kerases compute a function of the same name differently."""

    renamed_weights: ClassVar[dict[tuple[str, str], str]] = {}
    """(Keras class, variable name) -> the name qextract gives the tensor: the one it has in the other generation
    and in QKeras, so that exports of both generations name it alike."""

    renamed_attributes: ClassVar[dict[tuple[str, str], str]] = {}
    """(QKeras class, attribute in QKeras 0.9) -> the attribute holding the same object in this generation."""

    batchnorm_divides: ClassVar[tuple[str, ...]] = ()
    """Batch-norm classes computing their inverse themselves, ``1 / sqrt(variance + epsilon) * gamma`` (then an
    ``inverse_quantizer``, if given), instead of through ``tf.nn.batch_normalization`` (``rsqrt``): the last
    bits differ."""

    def passed_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Of the keyword arguments a :meth:`legacy_config` node records, those the model's code passed."""
        return kwargs

    def attribute(self, obj: Any, name: str) -> Any:
        """``obj``'s attribute that QKeras 0.9 calls ``name`` (None if it has none): registry entries name 0.9's."""
        for cls in type(obj).__mro__:
            if (cls.__name__, name) in self.renamed_attributes:
                return getattr(obj, self.renamed_attributes[cls.__name__, name], None)
        return getattr(obj, name, None)

    def traced_scope(self, scope: str, layer: str) -> bool:
        """True when name scope ``scope`` of a traced graph (a TFLite tensor name's part) is layer ``layer``'s."""
        return scope == layer

    @abstractmethod
    def save_model(self, model: Any, path: Any, suffix: str) -> None:
        """Write ``model`` to ``path`` (any name: a temporary one) in the format of the file suffix ``suffix``."""
        raise NotImplementedError

    @abstractmethod
    def variable_path(self, variable: Any) -> str:
        """The variable's full name, unique in its model (``dense/kernel:0``, ``functional/dense/kernel``)."""
        raise NotImplementedError

    def weight_name(self, layer: Any, variable: Any) -> str:
        """The name of weight ``variable`` of ``layer`` without scope: ``kernel``, ``depthwise_kernel``, ``gamma``."""
        short = self.variable_path(variable).split("/")[-1].split(":")[0]
        for cls in type(layer).__mro__:
            if (cls.__name__, short) in self.renamed_weights:
                return self.renamed_weights[cls.__name__, short]
        return short

    @abstractmethod
    def input_shape(self, layer: Any) -> Any:
        """The layer's input shape from its graph nodes, as tf-keras's ``layer.input_shape`` gives it.

        Raises AttributeError when the layer was never called, RuntimeError
        when its calls saw different shapes (there is no one shape).
        """
        raise NotImplementedError

    @abstractmethod
    def output_shape(self, layer: Any) -> Any:
        """The layer's output shape, as :meth:`input_shape`."""
        raise NotImplementedError

    @abstractmethod
    def built_input_shape(self, layer: Any) -> Any:
        """The input shape the layer was built with (None if unknown): for a layer without graph nodes."""
        raise NotImplementedError

    @abstractmethod
    def first_input_shape(self, layer: Any) -> Any:
        """The input shape of the layer's first call (a shared layer has no one :meth:`input_shape`)."""
        raise NotImplementedError

    @abstractmethod
    def is_functional(self, model: Any) -> bool:
        """True for a functional model (a graph of layers, rebuildable from its configuration)."""
        raise NotImplementedError

    @abstractmethod
    def legacy_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """A model configuration (``get_config()``) in tf-keras's functional form, which both Kerases rebuild.

        That form is what qextract's graph edits read and write: ``input_layers`` and ``output_layers``
        are lists of ``[layer, node, tensor]``; a layer's ``inbound_nodes`` one list per call of
        ``[layer, node, tensor, kwargs]``; an ``InputLayer`` has ``batch_input_shape``. ``config`` is
        not changed.
        """
        raise NotImplementedError

    def nested_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A built-in Keras layer's ``{"class_name", "config"}`` made fit to sit inside another layer's config."""
        return entry

    @abstractmethod
    def inbound_layers(self, layer: Any) -> list[list[Any]]:
        """For each graph node of ``layer`` (each call), the layers whose outputs it reads."""
        raise NotImplementedError

    @abstractmethod
    def producer(self, tensor: Any) -> Any | None:
        """The layer that computed symbolic ``tensor`` (None: not a graph tensor)."""
        raise NotImplementedError


class _Legacy(Generation):
    """QKeras 0.9 on tf-keras (Keras 2): what the rest of qextract was first written for."""

    name = "qkeras-0.9"
    distribution = "QKeras"
    keras = "tf_keras"
    legacy_keras = True
    quantizer_base = "qkeras.quantizers:BaseQuantizer"
    keras_major = 2
    serialization = "tf_keras.src.saving.serialization_lib"
    reads_h5_named_keras = True
    model_suffixes = (".h5", ".hdf5")
    example = "digits_qcnn.h5"
    loads_savedmodel = True

    def save_model(self, model: Any, path: Any, suffix: str) -> None:
        model.save(path, save_format="h5")

    def variable_path(self, variable: Any) -> str:
        return str(variable.name)

    def input_shape(self, layer: Any) -> Any:
        return layer.input_shape

    def output_shape(self, layer: Any) -> Any:
        return layer.output_shape

    def built_input_shape(self, layer: Any) -> Any:
        return getattr(layer, "_build_input_shape", None)

    def first_input_shape(self, layer: Any) -> Any:
        return layer.get_input_shape_at(0)

    def is_functional(self, model: Any) -> bool:
        return bool(getattr(model, "_is_graph_network", False))

    def legacy_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def inbound_layers(self, layer: Any) -> list[list[Any]]:
        nodes = getattr(layer, "inbound_nodes", None) or []
        return [list(n.inbound_layers) if isinstance(n.inbound_layers, list) else [n.inbound_layers] for n in nodes]

    def producer(self, tensor: Any) -> Any | None:
        history = getattr(tensor, "_keras_history", None)
        return None if history is None else history.layer


class _Keras3(Generation):
    """qkeras-v3 on Keras 3 (TensorFlow backend)."""

    name = "qkeras-v3"
    distribution = "qkeras-v3"
    keras = "keras"
    legacy_keras = False
    quantizer_base = "qkeras.base_quantizer:BaseQuantizer"
    keras_major = 3
    serialization = "keras.src.saving.serialization_lib"
    reads_h5_named_keras = False
    model_suffixes = (".keras", ".h5")
    example = "digits_qcnn.keras"
    loads_savedmodel = False

    def traced_scope(self, scope: str, layer: str) -> bool:
        # Keras 3 enters each layer's name scope once more while tracing: "conv" becomes "conv_1"
        return scope == layer or (scope.startswith(layer + "_") and scope[len(layer) + 1 :].isdigit())

    def save_model(self, model: Any, path: Any, suffix: str) -> None:
        import os

        named = f"{path}{suffix}"  # Keras 3 takes the format from the file name only
        try:
            model.save(named)
            os.replace(named, path)
        finally:
            if os.path.lexists(named):
                os.unlink(named)

    # Keras 3's hard_sigmoid is relu6(x + 3) / 6 (slope 1/6), tf-keras's clip(0.2 x + 0.5, 0, 1).
    keras_activations: ClassVar[dict[str, str]] = {"hard_sigmoid": "keras3.hard_sigmoid"}
    # Keras 3 calls a depthwise kernel "kernel"; tf-keras and QKeras's QDepthwiseConv2D "depthwise_kernel".
    renamed_weights: ClassVar[dict[tuple[str, str], str]] = {("DepthwiseConv2D", "kernel"): "depthwise_kernel"}
    # qkeras-v3's QActivation keeps its quantizer in `activation`; 0.9's there keeps what it was given (a string).
    # A Keras 3 Bidirectional holds the layer it was given as `forward_layer` (tf-keras: `layer`, and a copy).
    renamed_attributes: ClassVar[dict[tuple[str, str], str]] = {
        ("QActivation", "quantizer"): "activation",
        ("Bidirectional", "layer"): "forward_layer",
    }

    # qkeras-v3's QBatchNormalization computes its inverse itself: 1 / sqrt(variance + epsilon) (QKeras 0.9 calls
    # tf.nn.batch_normalization, whose inverse is rsqrt).
    batchnorm_divides: ClassVar[tuple[str, ...]] = ("QBatchNormalization",)

    def passed_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # Keras 3 records mask=None on every call of a layer that takes a mask, whatever the model's code passed.
        return {k: v for k, v in kwargs.items() if not (k == "mask" and v is None)}

    def variable_path(self, variable: Any) -> str:
        # Keras 3 names a variable by its last part only ("kernel"); the path holds the layer's scope.
        return str(getattr(variable, "path", None) or variable.name)

    def input_shape(self, layer: Any) -> Any:
        return _node_shape(layer, "input_tensors", "input")

    def output_shape(self, layer: Any) -> Any:
        return _node_shape(layer, "output_tensors", "output")

    def built_input_shape(self, layer: Any) -> Any:
        shapes = getattr(layer, "_build_shapes_dict", None) or {}  # build()'s arguments: {"input_shape": ...}
        return next(iter(shapes.values())) if len(shapes) == 1 else None

    def first_input_shape(self, layer: Any) -> Any:
        return _node_shapes(layer, "input_tensors", "input")[0]

    def is_functional(self, model: Any) -> bool:
        return any(c.__name__ == "Functional" for c in type(model).__mro__)

    def nested_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        # Keras 3 finds a built-in class inside another layer's config (Bidirectional's layer) only by module.
        if ">" in entry["class_name"] or "module" in entry:  # a registered class ("package>Name") is found by name
            return entry
        return {"module": "keras.layers", "registered_name": None, **entry}

    def legacy_config(self, config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        for key in ("input_layers", "output_layers"):
            if key in out and _is_ref(out[key]):  # one input or output: Keras 3 writes the reference alone
                out[key] = [out[key]]
        out["layers"] = [_legacy_entry(e) for e in config.get("layers", [])]
        return out

    def inbound_layers(self, layer: Any) -> list[list[Any]]:
        nodes = getattr(layer, "_inbound_nodes", None) or []
        return [[t._keras_history.operation for t in n.input_tensors] for n in nodes]

    def producer(self, tensor: Any) -> Any | None:
        history = getattr(tensor, "_keras_history", None)
        return None if history is None else history.operation


def _node_shapes(layer: Any, attribute: str, what: str) -> list[Shape | list[Shape]]:
    """The shape of ``attribute`` (one tensor's, or a list) at every graph node of ``layer``, first call first."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        raise AttributeError(f"layer '{layer.name}' has never been called and has no {what} shape")
    shapes: list[Shape | list[Shape]] = []
    for node in nodes:
        found = [tuple(t.shape) for t in getattr(node, attribute)]
        shapes.append(found[0] if len(found) == 1 else found)
    return shapes


def _node_shape(layer: Any, attribute: str, what: str) -> Any:
    """The one shape of ``attribute`` over every graph node of ``layer`` (tf-keras's rule for ``input_shape``)."""
    shapes = _node_shapes(layer, attribute, what)
    if any(s != shapes[0] for s in shapes[1:]):
        raise RuntimeError(f"layer '{layer.name}' has several inbound nodes with different {what} shapes")
    return shapes[0]


def _is_ref(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _legacy_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One layer entry of a Keras 3 configuration with tf-keras's ``inbound_nodes`` and ``batch_input_shape``."""
    entry = dict(entry)
    if entry.get("class_name") == "InputLayer" and "batch_shape" in entry.get("config", {}):
        inner = dict(entry["config"])
        inner["batch_input_shape"] = inner.pop("batch_shape")
        entry["config"] = inner
    nodes = []
    for node in entry.get("inbound_nodes", []):
        if not isinstance(node, dict):
            nodes.append(node)
            continue
        # Keras 3 records the call context's training=False (inference) on every layer that takes it; tf-keras
        # records only arguments the model's code passed.
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if not (k == "training" and not v)}
        refs: list[list[Any]] = []
        _tensor_refs(node.get("args", []), refs, entry.get("name", "?"))
        nodes.append([[*ref, kwargs] for ref in refs])
    if "inbound_nodes" in entry:
        entry["inbound_nodes"] = nodes
    return entry


def _tensor_refs(args: Any, refs: list[list[Any]], layer: str) -> None:
    """The ``[layer, node, tensor]`` of every symbolic tensor in a Keras 3 node's ``args``, in order."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        refs.append(list(args["config"]["keras_history"]))
    elif isinstance(args, (list, tuple)):
        for a in args:
            _tensor_refs(a, refs, layer)
    else:
        raise UnsupportedError(
            f"layer '{layer}' is called with an argument that is not a tensor ({str(args)[:80]}); qextract rebuilds "
            "and walks only layers called on tensors"
        )


LEGACY: Generation = _Legacy()
"""QKeras 0.9 on TensorFlow 2.x through tf-keras: the stack ``pip install qextract`` brings."""

KERAS3: Generation = _Keras3()
"""qkeras-v3 on Keras 3 with the TensorFlow backend."""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class AmbiguousInstall(Exception):
    """Both QKeras distributions are installed: the ``qkeras`` package is whichever was installed last."""


def installed() -> Generation:
    """The generation of the installed QKeras, from its distribution's metadata (nothing is imported).

    ``qkeras-v3`` installed: Keras 3. Else the legacy stack, also when no
    QKeras is installed at all (importing it then fails with its own message).
    Both installed: :class:`AmbiguousInstall` (they overwrite each other's
    files, so neither can be trusted).
    """
    v3, legacy = _version(KERAS3.distribution), _version(LEGACY.distribution)
    if v3 is not None and legacy is not None:
        raise AmbiguousInstall(f"both QKeras {legacy} (QKeras) and qkeras-v3 {v3} are installed")
    return KERAS3 if v3 is not None else LEGACY
