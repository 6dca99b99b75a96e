"""LR-finder-guided Ray Tune sweep: `ray job submit --working-dir . -- python jobs/sweep.py --task planet ...`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, when not pip-installed

from raylessons.sweep.cli import sweep_main


def main(argv=None) -> int:
    return sweep_main(argv)


if __name__ == "__main__":
    sys.exit(main())
