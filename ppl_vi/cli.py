"""The ``ppl-vi`` command line.

``ppl-vi models``   lists the zoo.
``ppl-vi compare``  runs several inference methods on one model and writes a report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _cmd_models(args: argparse.Namespace) -> int:
    import models

    rows = []
    for name in models.names():
        m = models.get(name)
        rows.append((name, ", ".join(m.latent_sites), "yes" if m.conjugate else "no", m.reference))
    header = ("model", "latent sites", "conjugate", "reference")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppl-vi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_models = sub.add_parser("models", help="list the model zoo")
    p_models.set_defaults(func=_cmd_models)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
