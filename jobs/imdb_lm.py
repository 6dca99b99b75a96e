"""IMDB language-model fine-tuning on Ray Train: `ray job submit --working-dir . -- python jobs/imdb_lm.py ...`."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, when not pip-installed

from raylessons.distributed.launch import add_train_arguments, run_from_args
from raylessons.errors import RaylessonsError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser, task="imdb_lm")
    args = parser.parse_args(argv)
    try:
        run_from_args(args, task="imdb_lm")
    except RaylessonsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
