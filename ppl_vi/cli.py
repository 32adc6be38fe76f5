"""The ``ppl-vi`` command line.

``ppl-vi models``   lists the zoo.
``ppl-vi methods``  lists the inference methods ``compare`` can run.
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


def _cmd_methods(args: argparse.Namespace) -> int:
    from ppl_vi.diagnostics.methods import method_specs

    for spec in method_specs():
        print(f"{spec.name:<10} {spec.description}")
        if spec.variants:
            print(f"{'':<10} variants: {', '.join(f'{spec.name}:{v}' for v in spec.variants)}"
                  f" (default {spec.default_variant})")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out)
    if (out / "report.md").exists() and not args.overwrite:
        print(f"error: {out / 'report.md'} already exists; use --overwrite or another --out", file=sys.stderr)
        return 2
    _enable_float64()
    from ppl_vi.diagnostics.compare import compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    svi_loops = {"svi", "local_svi", "amortized"} & {m.partition(":")[0] for m in methods}  # SVI runner loops
    options = {name: {"num_steps": args.svi_steps} for name in svi_loops} if args.svi_steps else {}
    try:
        report = compare(
            args.model, methods=methods, backend=args.backend, reference=args.reference, seed=args.seed,
            num_draws=args.num_draws, num_khat_seeds=args.khat_seeds, method_options=options,
            progress_bar=not args.quiet,
        )
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    report.save(out, overwrite=args.overwrite)
    if not args.quiet:
        columns = [c for c in ("method", "status", "elbo", "wall_time_s", "khat_median",
                               "max_abs_mean_error_sd", "worst_sd_ratio") if c in report.summary]
        print(report.summary[columns].to_string(index=False))
        print(report.verdict().splitlines()[0])
    print(f"report written to {out / 'report.md'}")
    return 0


def _enable_float64() -> None:
    """Double precision in both hosts (CAVI's monotone ELBO and PSIS need it)."""
    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    torch.set_default_dtype(torch.float64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppl-vi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_models = sub.add_parser("models", help="list the model zoo")
    p_models.set_defaults(func=_cmd_models)
    p_methods = sub.add_parser("methods", help="list the inference methods compare can run")
    p_methods.set_defaults(func=_cmd_methods)
    p_cmp = sub.add_parser("compare", help="compare inference methods on one model and write a report")
    p_cmp.add_argument("--model", required=True, help="zoo model name (see `ppl-vi models`)")
    p_cmp.add_argument("--methods", default="svi,nuts",
                       help="comma-separated methods (see `ppl-vi methods`), e.g. cavi,svi,svi:AutoMultivariateNormal,nuts")
    p_cmp.add_argument("--backend", default="numpyro", choices=("numpyro", "pyro"))
    p_cmp.add_argument("--reference", default="auto", choices=("auto", "exact", "posteriordb", "nuts"))
    p_cmp.add_argument("--out", required=True, help="directory for report.md, CSV/JSON tables and PNG plots")
    p_cmp.add_argument("--seed", type=int, default=0)
    p_cmp.add_argument("--num-draws", type=int, default=1000, help="posterior draws per method and per k̂ seed")
    p_cmp.add_argument("--khat-seeds", type=int, default=3, help="independent k̂ estimates per method")
    p_cmp.add_argument("--svi-steps", type=int, default=0,
                       help="maximum steps of svi, local_svi and amortized (default: the runner's)")
    p_cmp.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    p_cmp.add_argument("--quiet", action="store_true", help="no progress bars or tables on the terminal")
    p_cmp.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
