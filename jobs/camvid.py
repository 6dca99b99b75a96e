"""CamVid segmentation (U-Net) training on Ray Train: `ray job submit --working-dir . -- python jobs/camvid.py ...`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, when not pip-installed

from raylessons.distributed.cli import job_main


def main(argv=None) -> int:
    return job_main("camvid", argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
