#!/usr/bin/env python3
"""Run ``acfd`` from this checkout without installing it (the device's Python has no ``acfd``).

    python scripts/acfd_here.py train ...            # an acfd command (acfd.cli)
    python scripts/acfd_here.py scripts/x.py ARGS    # a script, with acfd importable
    python scripts/acfd_here.py -c CODE              # code, with acfd importable

``acfd`` is imported from this checkout's ``acfd/`` and its subpackages ``acfd.training``,
``acfd.kernels``, ``acfd.clients`` from ``training/``, ``kernels/``, ``clients/`` (pyproject's
package-dir mapping, done by hand), ahead of any installed copy: a trip's dry run from a copy of the
travelling tree then tests that copy, not the developer's editable install.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_here() -> None:
    sys.path.insert(0, str(ROOT))
    for name in [m for m in sys.modules if m == "acfd" or m.startswith("acfd.")]:
        del sys.modules[name]
    import acfd

    if str(ROOT) not in acfd.__path__:
        acfd.__path__.append(str(ROOT))  # acfd.training -> ROOT/training, acfd.kernels -> ROOT/kernels
    import acfd.training

    here = Path(acfd.training.__file__).resolve()
    if ROOT not in here.parents:
        raise ImportError(f"acfd.training came from {here}, not from {ROOT}")


def main() -> int:
    import_here()
    argv = sys.argv[1:]
    if argv[:1] == ["-c"]:
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<acfd_here -c>", "exec"), {"__name__": "__main__"})
        return 0
    if argv and argv[0].endswith(".py"):
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")
        return 0
    from acfd.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
