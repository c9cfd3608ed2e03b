"""Per-request work moto's server repeats although the answer cannot change while the sandbox runs.

Every request made moto list its own package directory (~180 ``stat`` calls, to
recognise a host name) and ``inspect.getmembers`` the whole response class (to
find the operation's method): about half of the server time of a small call
such as CreateTags. Both answers are computed once here. The method-name cache
is cleared whenever the sandbox (re)installs its methods on moto's classes.
"""

from __future__ import annotations

import functools

import moto.backends
import moto.core.responses

from sandbox import moto_hooks

_METHOD_NAMES: dict[type, list[str]] = {}


@functools.lru_cache(maxsize=1)
def _moto_modules() -> tuple[str, ...]:
    return tuple(moto_hooks.original(moto.backends, "list_of_moto_modules")())


def _method_names(cls: type) -> list[str]:
    names = _METHOD_NAMES.get(cls)
    if names is None:
        names = _METHOD_NAMES[cls] = moto_hooks.original(moto.core.responses, "method_names_from_class")(cls)
    return names


def install() -> None:
    _METHOD_NAMES.clear()
    moto_hooks.replace(moto.backends, "list_of_moto_modules", _moto_modules)
    moto_hooks.replace(moto.core.responses, "method_names_from_class", _method_names)
