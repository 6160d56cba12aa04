"""Read named arrays: a PyTorch ``state_dict`` (``.npz`` or ``.pt``) or an ``.npz`` keyed like qextract's.

Two naming schemes, told apart by the keys:

- **Keras names** ``<layer>/<tensor>`` (qextract's ``weights.npz``; ``:codes``,
  ``:scale``, ``:signs`` keys are skipped, ``:raw`` preferred): matched by name.
- **PyTorch names** ``<module>.<parameter>``: modules, in the order of the
  file, are paired with the model's layers that have weights, in model order
  (a SeparableConv takes two modules, depthwise then pointwise); a
  ``mapping={"keras_layer": "module"}`` (or two modules for a separable
  layer) pairs layers explicitly, and the remaining ones still pair in order.
  Per module: ``weight`` -> kernel (depthwise_kernel / gamma), ``bias`` ->
  bias (beta), ``running_mean`` / ``running_var`` -> moving_mean /
  moving_variance (``num_batches_tracked`` is ignored). Recurrent modules:
  ``weight_ih_l0`` -> kernel, ``weight_hh_l0`` -> recurrent_kernel, biases
  ``bias_ih_l0 + bias_hh_l0`` (a GRU with ``reset_after=True`` stacks them);
  a GRU's gates are reordered from PyTorch's r,z,n to Keras's z,r,h (an
  LSTM's i,f,g,o already is Keras's i,f,c,o); ``_reverse`` tensors go to
  a Bidirectional's backward layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayoutError, ModelLoadError, UnsupportedError, UsageError
from ..kinds import Kind
from ..layouts import Layout
from .records import Gathered, Incoming
from .targets import Target

SKIPPED_SUFFIXES = (":codes", ":scale", ":signs")
RAW = ":raw"
PARAMETERS: dict[Kind, dict[str, str]] = {
    Kind.BATCHNORM: {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    },
    Kind.DEPTHWISE_CONV2D: {"weight": "depthwise_kernel", "bias": "bias"},
}
CONV = {"weight": "kernel", "bias": "bias"}
RNN_KINDS = (Kind.SIMPLE_RNN, Kind.LSTM, Kind.GRU)
SEPARABLE_KINDS = (Kind.SEPARABLE_CONV1D, Kind.SEPARABLE_CONV2D)  # two PyTorch modules: depthwise, then pointwise
IGNORED = {"num_batches_tracked": "a BatchNorm step counter, not a weight"}


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every named array of an ``.npz`` (no pickle) or a PyTorch ``.pt`` (needs torch), in file order."""
    if path.suffix == ".pt" or path.suffix == ".pth":
        return _torch_arrays(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a readable .npz file ({e})") from None


def _torch_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ModelLoadError(
            f"{path}: reading a PyTorch .pt file needs torch, which is not installed. Fix: pip install torch, or save "
            "the state dict as .npz in PyTorch: np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"{path}: torch cannot load it as a state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ModelLoadError(
            f"{path}: holds a {type(state).__name__}, not a state dict. Fix: torch.save(model.state_dict(), path)"
        )
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def read_arrays(
    path: Path, targets: list[Target], layout: Layout, order: str, mapping: Mapping[str, Any] | None
) -> Gathered:
    arrays = load_arrays(path)
    if _keras_named(arrays, targets):
        if mapping:
            raise UsageError(
                f"{path}: its keys are Keras names '<layer>/<tensor>', matched by name; "
                "mapping applies to PyTorch names only"
            )
        return _by_keras_names(path, arrays, targets, layout, order)
    return _by_modules(path, arrays, targets, layout, order, mapping or {})


def _keras_named(arrays: dict[str, np.ndarray], targets: list[Target]) -> bool:
    paths = [t.path + "/" for t in targets]
    return any(k.split(":")[0].startswith(p) for k in arrays for p in paths)


def _by_keras_names(
    path: Path, arrays: dict[str, np.ndarray], targets: list[Target], layout: Layout, order: str
) -> Gathered:
    found = Gathered(kind="npz (Keras names)", padding_rule="tf")
    by_path = sorted(targets, key=lambda t: -len(t.path))  # "outer/inner" before "outer"
    for key, array in arrays.items():
        if key.endswith(SKIPPED_SUFFIXES):
            continue
        if key.endswith(RAW) or (key + RAW) in arrays:
            if not key.endswith(RAW):
                continue
            name, what = key[: -len(RAW)], "raw"
        else:
            name, what = key, "float32" if array.dtype == np.float32 else str(array.dtype)
        target = next((t for t in by_path if name.startswith(t.path + "/")), None)
        tensor = name[len(target.path) + 1 :] if target else ""
        if target is None:
            found.unused.append((key, "no layer of the model has this name"))
        elif tensor in target.derived:
            found.ignored.append((key, "derived from the layer's configuration, not a weight"))
        elif tensor not in target.tensors:
            found.unused.append((key, f"{target.where} has no tensor '{tensor}'"))
        else:
            found.incoming.append(Incoming(target.path, tensor, array, key, layout, what, order))
    return found


def _modules(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        prefix, _, parameter = key.rpartition(".")
        modules.setdefault(prefix, {})[parameter] = array
    return modules


def _by_modules(
    path: Path,
    arrays: dict[str, np.ndarray],
    targets: list[Target],
    layout: Layout,
    order: str,
    mapping: Mapping[str, Any],
) -> Gathered:
    modules = _modules(arrays)
    weighted = [t for t in targets if t.tensors]
    pairs = _pairs(path, weighted, modules, mapping)
    found = Gathered(kind="state dict", padding_rule="symmetric")
    found.hint = (
        "PyTorch modules are paired with the model's layers with weights in order (module order = Keras layer "
        "order); if that pairing is wrong, pass mapping={'keras_layer': 'module'}"
    )
    used: set[str] = set()
    for target, prefixes in pairs:
        for prefix in prefixes:
            used.add(prefix)
        _bind(target, [(p, modules[p]) for p in prefixes], layout, order, found)
    for prefix, params in modules.items():
        if prefix not in used:
            for p in params:
                found.unused.append((_key(prefix, p), "no Keras layer is paired with this module"))
    return found


def _key(prefix: str, parameter: str) -> str:
    return f"{prefix}.{parameter}" if prefix else parameter


def _pairs(
    path: Path, weighted: list[Target], modules: dict[str, dict[str, np.ndarray]], mapping: Mapping[str, Any]
) -> list[tuple[Target, list[str]]]:
    by_path = {t.path: t for t in weighted}
    explicit: dict[str, list[str]] = {}
    for layer, prefixes in mapping.items():
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        if layer not in by_path:
            raise UsageError(
                f"mapping names layer '{layer}', which is not a layer with weights of the model; "
                f"those are: {', '.join(by_path)}"
            )
        unknown = [p for p in prefixes if p not in modules]
        if unknown:
            raise UsageError(
                f"mapping names module(s) {', '.join(map(repr, unknown))} for '{layer}', not in {path}; "
                f"its modules are: {', '.join(modules)}"
            )
        explicit[layer] = prefixes
    taken = {p for ps in explicit.values() for p in ps}
    free = [p for p in modules if p not in taken and set(modules[p]) - set(IGNORED)]
    pairs = []
    for target in weighted:
        if target.path in explicit:
            pairs.append((target, explicit[target.path]))
            continue
        count = 2 if target.kind in SEPARABLE_KINDS else 1
        if len(free) < count:
            break
        pairs.append((target, free[:count]))
        free = free[count:]
    return pairs


def _bind(
    target: Target, modules: list[tuple[str, dict[str, np.ndarray]]], layout: Layout, order: str, found: Gathered
) -> None:
    kind = target.kind
    if kind in SEPARABLE_KINDS:
        if len(modules) != 2:
            raise UsageError(f"{target.where} takes two modules (depthwise, then pointwise), not {len(modules)}")
        (dw_prefix, dw), (pw_prefix, pw) = modules
        _add(target, "depthwise_kernel", dw_prefix, dw, "weight", layout, order, found)
        _add(target, "pointwise_kernel", pw_prefix, pw, "weight", layout, order, found)
        _add(target, "bias", pw_prefix, pw, "bias", layout, order, found)
        if "bias" in dw:
            found.unused.append((_key(dw_prefix, "bias"), f"{target.where} has no depthwise bias"))
        _leftover(target, dw_prefix, dw, {"weight", "bias"}, found)
        _leftover(target, pw_prefix, pw, {"weight", "bias"}, found)
        return
    if len(modules) != 1:
        raise UsageError(f"{target.where} takes one module, not {len(modules)}")
    prefix, params = modules[0]
    if kind in RNN_KINDS:
        _rnn(target, "", prefix, params, "_l0", kind, layout, found)
        _leftover(target, prefix, params, {f"{p}_l0" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}, found)
        return
    if kind is Kind.BIDIRECTIONAL:
        inner = _rnn_kind(target.layer.forward_layer)
        _rnn(target, "forward/", prefix, params, "_l0", inner, layout, found)
        _rnn(target, "backward/", prefix, params, "_l0_reverse", inner, layout, found)
        names = {f"{p}_l0{r}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") for r in ("", "_reverse")}
        _leftover(target, prefix, params, names, found)
        return
    table = PARAMETERS.get(kind, CONV)
    for parameter, tensor in table.items():
        _add(target, tensor, prefix, params, parameter, layout, order, found)
    _leftover(target, prefix, params, set(table), found)


def _add(
    target: Target,
    tensor: str,
    prefix: str,
    params: dict[str, np.ndarray],
    parameter: str,
    layout: Layout,
    order: str,
    found: Gathered,
) -> None:
    if parameter not in params:
        return  # a missing tensor: load_weights reports it (strict) or keeps the layer's own
    key = _key(prefix, parameter)
    if tensor not in target.tensors:
        found.unused.append((key, f"{target.where} has no tensor '{tensor}'"))
        return
    array = params[parameter]
    found.incoming.append(Incoming(target.path, tensor, array, key, layout, str(array.dtype), order))


def _leftover(target: Target, prefix: str, params: dict[str, np.ndarray], known: set[str], found: Gathered) -> None:
    for parameter in params:
        if parameter in IGNORED:
            found.ignored.append((_key(prefix, parameter), IGNORED[parameter]))
        elif parameter not in known:
            found.unused.append((_key(prefix, parameter), f"{target.where} has no place for a '{parameter}'"))


def _rnn_kind(layer: Any) -> Kind:
    from ..layers import spec_for

    return spec_for(layer).kind


def _rnn(
    target: Target,
    into: str,
    prefix: str,
    params: dict[str, np.ndarray],
    suffix: str,
    kind: Kind,
    layout: Layout,
    found: Gathered,
) -> None:
    """PyTorch's weight_ih / weight_hh / bias_ih + bias_hh -> Keras kernel / recurrent_kernel / bias."""
    if kind not in RNN_KINDS:
        raise UnsupportedError(
            f"{target.where}: qextract maps PyTorch recurrent modules to "
            f"SimpleRNN, LSTM and GRU layers only, not {kind}"
        )
    gru = kind is Kind.GRU
    reorder = _gru_gates if gru else (lambda a: a)
    note = "gates r,z,n -> z,r,h" if gru else ""
    for parameter, tensor in (("weight_ih", "kernel"), ("weight_hh", "recurrent_kernel")):
        key = _key(prefix, parameter + suffix)
        if parameter + suffix in params and into + tensor in target.tensors:
            array = reorder(params[parameter + suffix])
            found.incoming.append(Incoming(target.path, into + tensor, array, key, layout, str(array.dtype), note=note))
    ih, hh = params.get("bias_ih" + suffix), params.get("bias_hh" + suffix)
    if ih is None or hh is None or into + "bias" not in target.tensors:
        return
    keys = f"{_key(prefix, 'bias_ih' + suffix)} + {_key(prefix, 'bias_hh' + suffix)}"
    if gru:
        if len(target.shapes[into + "bias"]) != 2:
            raise LayoutError(
                f"{target.where}: PyTorch's GRU applies its recurrent bias inside the reset gate, as Keras does "
                "only with reset_after=True. Fix: build the GRU with reset_after=True"
            )
        array = np.stack([reorder(ih), reorder(hh)])
        found.incoming.append(
            Incoming(target.path, into + "bias", array, keys, layout, str(ih.dtype), note=f"stacked; {note}")
        )
        return
    array = (ih.astype(np.float32) + hh.astype(np.float32)).astype(np.float32)
    found.incoming.append(
        Incoming(target.path, into + "bias", array, keys, layout, str(ih.dtype), note="bias_ih + bias_hh")
    )


def _gru_gates(array: np.ndarray) -> np.ndarray:
    r, z, n = np.split(np.asarray(array), 3, axis=0)
    return np.concatenate([z, r, n], axis=0)
