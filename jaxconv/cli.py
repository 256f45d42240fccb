"""The ``jaxconv`` command: ``train``, ``check`` and ``bench``.

Each subcommand lives in its own module (imported lazily, so ``--help`` is fast);
this file only parses flags. Bad flags exit with status 2 and one line.
"""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, never a traceback
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxconv", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (default: ThreeLayerConvNet on digits)")
    train.add_argument("--model", choices=["convnet", "fcnet"], default="convnet")
    train.add_argument("--data", choices=["digits", "cifar10"], default="digits")
    train.add_argument("--data-dir", default=None, help="folder of cifar-10-batches-py")
    train.add_argument("--epochs", type=_positive_int, default=None)
    train.add_argument("--batch-size", type=_positive_int, default=None)
    train.add_argument("--optimizer", choices=["adam", "sgd", "sgd_momentum", "rmsprop"],
                       default="adam")
    train.add_argument("--lr", type=_positive_float, default=None)
    train.add_argument("--conv-impl", choices=["xla", "im2col", "naive"], default="xla")
    train.add_argument("--checkpoint-dir", default=None)
    train.add_argument("--plot", default=None, metavar="FILE.png")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() first (multi-host)")
    train.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="with --distributed: process 0's address (default: JAX detects "
                            "it on SLURM, Open MPI, Kubernetes and Cloud TPU)")
    train.add_argument("--num-processes", type=_positive_int, default=None)
    train.add_argument("--process-id", type=int, default=None)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    check = commands.add_parser("check", help="custom_vjp vs autodiff vs numerical, every op")
    check.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    check.add_argument("--op", action="append", default=None, metavar="NAME",
                       help="check only this op (repeatable); default: every registered op")

    bench = commands.add_parser("bench", help="timings: custom_vjp vs autodiff (vs PyTorch)")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    bench.add_argument("--json", default=None, metavar="FILE")
    bench.add_argument("--cpus", default=None, metavar="LIST",
                       help="pin the run to these cores, e.g. 0 or 0,1 or 0-3")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from jaxconv import train as command
    elif args.command == "check":
        from jaxconv import check as command
    else:
        from jaxconv import bench as command
    try:
        return command.run(args)
    except (ValueError, FileNotFoundError) as error:  # bad input: one clear line
        parser.exit(2, f"jaxconv {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
