"""Stand-ins for modules that a library imports eagerly but needs only on a rare path.

docker-py imports paramiko (about 0.13 s, a third of its own import) for ``ssh://`` daemons
only, and only touches it inside the SSH adapter's methods. ``importlib.util.LazyLoader``
cannot help here: on Python 3.11 a later ``import paramiko`` statement reads the module's
``__spec__`` and so loads it at once. A module object that fetches the real one on its first
attribute read keeps the import statement cheap and every ``paramiko.X`` use working.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """Loads the real module on first use, then stands aside for it in ``sys.modules``."""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        with _lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
        return getattr(real, attribute)


def defer(name: str) -> None:
    """Let ``import NAME`` succeed without loading it, if it is installed and not loaded yet."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    sys.modules[name] = _Deferred(name)
