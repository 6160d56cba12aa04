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

from .generation_v3 import (
    V3_DEFAULT_ONLY_ARGUMENTS,
    V3_NUMBERED_VARIABLES,
    V3_QUANTIZER_ARGUMENTS,
    _is_ref,
    _legacy_entry,
    _node_shape,
    _node_shapes,
    _tensor_refs,
)

__all__ = ["KERAS3", "LEGACY", "AmbiguousInstall", "Generation", "file_generation", "installed"]

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

    # --- model files read without Keras (qextract.reading.stored, qextract.engines) -----------------------------

    batchnorm_fold: ClassVar[str]
    """How this generation's folded conv-batchnorm layers compute ``inv`` (:mod:`qextract.engines.folding`):
    ``"rsqrt"`` (TensorFlow's ``rsqrt``, a CPU-specific approximation) or ``"reciprocal_sqrt"``
    (``1 / sqrt``: correctly rounded IEEE operations, which NumPy reproduces)."""

    quantizer_arguments: ClassVar[dict[str, tuple[tuple[str, Any], ...]]] = {}
    """Quantizer class -> this generation's constructor arguments and defaults, where they are not QKeras 0.9's
    (:attr:`qextract.quantizers.entry.QuantizerEntry.params`)."""

    default_only_arguments: ClassVar[dict[str, frozenset[str]]] = {}
    """Quantizer class -> the arguments this generation adds that the NumPy forms reproduce at their default only."""

    numbered_variables: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Layer class -> the names of the variables a ``.keras`` archive numbers (``vars/0``, ``vars/1``), in order;
    ``"bias?use_bias"`` is present only where the configuration's ``use_bias`` is true."""

    activation_names: ClassVar[dict[str, str]] = {"silu": "swish"}
    """Keras activation name -> the ``__name__`` of the function this generation's Keras gives for it, where the
    two differ (a stored ``"silu"`` is tf-keras's ``swish``; a stored ``"swish"`` is Keras 3's ``silu``)."""

    string_values_v3: ClassVar[bool] = False
    """Whether QKeras's quantizer-string parser reads ``None`` as None and ``[1 2]`` as a list of numbers
    (qkeras-v3's ``GetArg``); QKeras 0.9 reads both as text with its first and last character cut off."""

    def stored_class(self, spec: dict[str, Any]) -> str:
        """A stored layer entry's class name (Keras 3 writes a registered class as ``qkeras>QConv2D`` in .h5)."""
        return str(spec.get("class_name", "")).split(">")[-1]

    def stored_inbound(self, spec: dict[str, Any]) -> tuple[str, ...]:
        """The layers feeding a stored layer entry's calls (functional models; empty in a Sequential)."""
        names: list[str] = []
        for node in spec.get("inbound_nodes") or []:
            for edge in node if isinstance(node, list) else []:
                if isinstance(edge, list) and edge and isinstance(edge[0], str):
                    names.append(edge[0])
        return tuple(names)

    def derived_quantizer_attributes(self, class_name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """What this generation's quantizer constructor sets beyond QKeras 0.9's, from its arguments."""
        return {}


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
    batchnorm_fold = "rsqrt"

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
    batchnorm_fold = "reciprocal_sqrt"
    activation_names: ClassVar[dict[str, str]] = {"swish": "silu", "hard_swish": "hard_silu"}
    string_values_v3: ClassVar[bool] = True
    quantizer_arguments: ClassVar[dict[str, tuple[tuple[str, Any], ...]]] = V3_QUANTIZER_ARGUMENTS
    default_only_arguments: ClassVar[dict[str, frozenset[str]]] = V3_DEFAULT_ONLY_ARGUMENTS
    numbered_variables: ClassVar[dict[str, tuple[str, ...]]] = V3_NUMBERED_VARIABLES

    def stored_inbound(self, spec: dict[str, Any]) -> tuple[str, ...]:
        # Keras 3: each call is {"args": [...], "kwargs": {...}} holding __keras_tensor__ entries (.json, .keras);
        # a Keras 3 .h5 may hold tf-keras's lists.
        nodes = spec.get("inbound_nodes") or []
        if not any(isinstance(n, dict) for n in nodes):
            return super().stored_inbound(spec)
        refs: list[list[Any]] = []
        for node in nodes:
            _tensor_refs(node.get("args", []) if isinstance(node, dict) else node, refs, str(spec.get("name", "?")))
        return tuple(str(r[0]) for r in refs)

    def derived_quantizer_attributes(self, class_name: str, attributes: dict[str, Any]) -> dict[str, Any]:
        if class_name == "quantized_bits":  # qkeras-v3: a scale computed on every call ("auto*") is not frozen
            return {"freeze_scale": not isinstance(attributes.get("alpha"), str)}
        return {}

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

    batchnorm_divides: ClassVar[tuple[str, ...]] = ("QBatchNormalization",)  # 0.9 calls tf.nn.batch_normalization

    def passed_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:  # mask=None recorded on every call
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


def file_generation(keras_version: str | None) -> Generation:
    """The generation that wrote a model file, from the ``keras_version`` it records (``2.x``: tf-keras, so
    QKeras 0.9; ``3.x``: Keras 3, so qkeras-v3); a file without one is tf-keras's (older Keras wrote none)."""
    major = str(keras_version or "2").split(".")[0]
    return KERAS3 if major == str(KERAS3.keras_major) else LEGACY
