"""Constructors of frozen results for the hot path, a quarter to a third cheaper than ``__init__``.

A warm check builds two frozen attrs objects (its :class:`~stigg_cache.models.Decision`
and its result) and little else, so their construction is most of its cost. The
``__init__`` attrs writes for a frozen class sets each field through
``object.__setattr__``; :func:`assembler` makes a function that sets each slot
through its own descriptor instead, with the fields that never change (the
customer, the feature, ``source=CACHE`` ...) bound once. The object is the one
``cls(...)`` makes: same type, fields, equality and hash.

That is only true of classes whose ``__init__`` does nothing else, so
:func:`assembler` refuses a class with validators, converters, ``on_setattr``
hooks or ``__attrs_pre_init__``/``__attrs_post_init__``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

T = TypeVar("T", bound=attrs.AttrsInstance)


def assembler(cls: type[T], **fixed: Any) -> Callable[..., T]:
    """A function making ``cls`` from its other fields, positionally in field order.

    ``assembler(Decision, source=Source.CACHE, stale=False, rule=None, reason=None)``
    returns ``make(age_s, policy_version)``. Every field is either fixed or an
    argument: no defaults are filled in. Pass exactly the fields not fixed (the
    fixed ones follow them as parameters with defaults, for speed).
    """
    names = tuple(field.name for field in attrs.fields(cls))
    unknown = set(fixed) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)}")
    taken = tuple(name for name in names if name not in fixed)
    build = _builder(cls, names, taken)
    return build(*(fixed[name] for name in names if name in fixed))


@functools.cache
def _builder(
    cls: type[Any], names: tuple[str, ...], taken: tuple[str, ...]
) -> Callable[..., Callable[..., Any]]:
    """Compiled once per class and choice of fields: binds the fixed values, returns ``make``."""
    _refuse_unless_plain(cls)
    setters = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    fixed = [name for name in names if name not in taken]
    # Bound values are defaults of trailing parameters (one tuple to read: cheaper than
    # closure cells or keyword-only defaults); callers pass exactly the fields taken.
    parameters = ", ".join([*taken, *(f"_v_{name}=_v_{name}" for name in fixed)])
    lines = [
        f"def build({', '.join(f'_v_{name}' for name in fixed)}):",
        f"    def make({parameters}):",
        "        self = _new(_cls)",
        *(f"        _set_{name}(self, {_value(name, taken)})" for name in names),
        "        return self",
        "    return make",
    ]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from field names only
    return namespace["build"]  # type: ignore[no-any-return]


def _value(name: str, taken: tuple[str, ...]) -> str:
    """What ``make`` sets field ``name`` to: its argument, or the value bound."""
    return name if name in taken else f"_v_{name}"


def _refuse_unless_plain(cls: type[Any]) -> None:
    """Setting the slots is ``__init__`` only for a slotted class whose ``__init__`` sets them."""
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    hooks = [name for name in ("__attrs_pre_init__", "__attrs_post_init__") if hasattr(cls, name)]
    hooks += [
        field.name
        for field in attrs.fields(cls)
        if field.validator is not None or field.converter is not None or field.on_setattr
    ]
    if hooks:
        raise TypeError(f"{cls.__name__}.__init__ does more than set its fields: {hooks}")
