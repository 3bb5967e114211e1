"""`python -m mmemory.bench <name> [options]`: dispatch to mmemory.bench.<name>.main(argv)."""
import importlib
import pkgutil
import sys

import mmemory.bench as bench


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    if not argv or argv[0] not in names:
        print(f"usage: python -m mmemory.bench {{{','.join(names)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(f"mmemory.bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
