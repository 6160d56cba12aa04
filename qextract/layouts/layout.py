"""A layout's name: :class:`Layout`.

Parsed from the names and aliases of :data:`~qextract.layouts.rules.LAYOUT_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import LayoutError
from .rules import LAYOUT_RULES, LayoutRule

LAYOUTS: tuple[str, ...] = tuple(rule.name for rule in LAYOUT_RULES)
"""Layout names, in the order the CLI offers them."""

_NATIVE = LAYOUTS[0]
_BY_NAME: dict[str, LayoutRule] = {rule.name: rule for rule in LAYOUT_RULES}
_ALIASES: dict[str, str] = {name: rule.name for rule in LAYOUT_RULES for name in (rule.name, *rule.aliases)}


@dataclass(frozen=True)
class Layout:
    """A target weight layout: ``hwio`` (Keras native), ``ohwi`` (TFLite), ``oihw`` (PyTorch/ONNX/Caffe).

    Build it with :meth:`parse`, which accepts the names, their aliases
    (``keras``, ``tflite``, ``pytorch``, ``onnx``, ``caffe``), any case, and
    the arrow form in either direction: ``"HWIO->OHWI"`` (exporting) and
    ``"OHWI->HWIO"`` (importing) both give ``ohwi``. A Layout names the
    foreign arrangement; which way the arrays move is said by the function
    that takes it (:meth:`LayoutPlan.apply <qextract.layouts.LayoutPlan.apply>` /
    :meth:`~qextract.layouts.LayoutPlan.invert`, ``export`` / ``load_weights``).
    One side of an arrow must be the native hwio.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in LAYOUTS:
            raise LayoutError(f"unknown layout {self.name!r}; choose one of {', '.join(LAYOUTS)}")

    @classmethod
    def parse(cls, spec: str | Layout) -> Layout:
        if isinstance(spec, Layout):
            return spec
        if not isinstance(spec, str):
            raise LayoutError(f"a layout is a string such as 'ohwi', not {type(spec).__name__}")
        return _parse_layout(spec)

    @property
    def native(self) -> bool:
        return self.name == _NATIVE

    @property
    def rule(self) -> LayoutRule:
        """This layout's entry of the layout table."""
        return _BY_NAME[self.name]

    def __str__(self) -> str:
        return self.name


@lru_cache(maxsize=256)
def _parse_layout(spec: str) -> Layout:
    choices = f"choose one of {', '.join(LAYOUTS)} (aliases: {', '.join(sorted(set(_ALIASES) - set(LAYOUTS)))})"
    text = spec.strip().lower()
    if "->" in text:
        source, _, target = (part.strip() for part in text.partition("->"))
        sides = [_ALIASES.get(source, source), _ALIASES.get(target, target)]
        if _NATIVE not in sides:
            raise LayoutError(
                f"layout {spec!r}: one side must be the native {_NATIVE} (Keras); qextract converts between "
                f"{_NATIVE} and one other layout, not {source!r} to {target!r} directly"
            )
        text = target if sides[0] == _NATIVE else source
    if text not in _ALIASES:
        raise LayoutError(f"unknown layout {spec!r}; {choices}")
    return Layout(_ALIASES[text])
