"""The `raylessons` command: demo, data, train, pretrain-lm, serve, predict, sweep.

Each command imports what it runs when it runs (torch, Ray): `raylessons predict` and `--help` stay quick.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import RaylessonsError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from .data.download import DOWNLOADS
    from .data.synth import DATASETS
    from .distributed.pretrain import PretrainLM
    from .distributed.train import TrainRun
    from .options import add_dataclass_arguments

    parser = argparse.ArgumentParser(prog="raylessons", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="all workflows on generated data: Train, Tune, Serve, HTTP")
    demo.add_argument("--out", default="demo-out", help="where data, runs and exports go")
    demo.add_argument("--n", type=int, default=None, help="generated Planet images (default: demo preset)")
    demo.add_argument("--port", type=int, default=8000)
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny data, one epoch a stage, every layer (~2 min)")
    size.add_argument("--full", action="store_true", help="the first demo's sizes, every run on Ray Train (~25 min)")
    demo.add_argument("--verbose", action="store_true", help="show Ray's own log lines on the console")

    data = sub.add_parser("data", help="generate look-alike datasets or download the real ones")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write a look-alike dataset in the real on-disk format")
    synth_sub = synth.add_subparsers(dest="dataset", required=True)
    for name in DATASETS:
        p = synth_sub.add_parser(name)
        p.add_argument("--out", required=True)
        _add_synth_options(name, p)
    download = data_sub.add_parser("download", help="fetch a real dataset (needs internet)")
    download.add_argument("dataset", choices=sorted(DOWNLOADS))
    download.add_argument("--dest", default=None)

    sub.add_parser("train", help="run a plan on Ray Train: raylessons train --task T --data D ... "
                                 "(--task T --help lists T's options)")

    pre = sub.add_parser("pretrain-lm", help="pretrain an AWD-LSTM language model on a text corpus (Ray Train); "
                                             "its export is a `pretrained=` for language_model_learner")
    add_dataclass_arguments(pre, PretrainLM)
    add_dataclass_arguments(pre, TrainRun, only=("num_workers", "use_gpu", "storage_path", "name"),
                            defaults={"name": "pretrain-lm"})

    serve = sub.add_parser("serve", help="serve export directories over HTTP (blocks)")
    serve.add_argument("--export", action="append", required=True, metavar="TASK=DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-dir", default="~/raylessons_results/serve",
                       help="where Ray's and Serve's own log lines go (ray.log; ray-session-logs/)")
    serve.add_argument("--verbose", action="store_true", help="show Ray's own log lines on the console")

    sub.add_parser("predict", help="send files to a running server: raylessons predict --task T --url U FILE...")
    sub.add_parser("sweep", help="LR-finder-guided Ray Tune sweep: raylessons sweep --task T --data D --trials N ...")
    return parser


def _add_synth_options(name: str, parser: argparse.ArgumentParser) -> None:
    import importlib

    try:
        module = importlib.import_module(f"raylessons.data.synth.{name}")
    except ImportError:
        return
    if hasattr(module, "add_cli_arguments"):
        module.add_cli_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        preset = "smoke" if args.smoke else "full" if args.full else "default"
        return run_demo(args.out, n=args.n, port=args.port, preset=preset, verbose=args.verbose)
    if args.command == "data" and args.data_command == "synth":
        from .data.synth import synth

        opts = {k: v for k, v in vars(args).items()
                if k not in ("command", "data_command", "dataset", "out") and v is not None}
        print(synth(args.dataset, args.out, **opts))
        return 0
    if args.command == "data":
        from .data.download import download

        print(download(args.dataset, args.dest))
        return 0
    if args.command == "pretrain-lm":
        from .distributed.pretrain import PretrainLM, pretrain_lm
        from .distributed.train import TrainRun
        from .options import from_args, option_values

        result = pretrain_lm(from_args(PretrainLM, args), **option_values(TrainRun, args))
        print(json.dumps({"export": result["export"], "metrics": result["metrics"]}, indent=2, default=str))
        return 0
    if args.command == "serve":
        from .serving.local import serve_forever

        exports = dict(item.split("=", 1) for item in args.export)
        serve_forever(exports, host=args.host, port=args.port, verbose=args.verbose, log_dir=args.log_dir)
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:  # the client owns its options (argparse.REMAINDER drops '--x' flags)
        from .client import main as client_main

        return client_main(argv[1:])
    try:
        if argv[:1] == ["train"]:  # its options depend on --task: parsed in two steps
            from .distributed.cli import train_main

            return train_main(argv[1:], prog="raylessons train")
        if argv[:1] == ["sweep"]:
            from .sweep.cli import sweep_main

            return sweep_main(argv[1:])
        return _run(build_parser().parse_args(argv))
    except RaylessonsError as e:
        print(f"raylessons: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
