"""The demo's HTTP queries of the Serve application: each returns the lines it printed (for the report too)."""
from __future__ import annotations

from pathlib import Path

from .presets import SENTIMENT_EXAMPLES

__all__ = ["query_planet", "query_camvid", "query_head_pose", "query_sentiment"]


def _say(lines: list[str], line: str) -> None:
    print(line, flush=True)
    lines.append(line)


def query_planet(base_url: str, result: dict, k: int = 4) -> list[str]:
    """POST a few validation chips to /planet; the predicted tags beside the true ones."""
    from ..client import predict_files

    lines: list[str] = []
    items = result["valid_items"][:k]
    answers = predict_files("planet", base_url, items)
    _say(lines, f"POST {base_url}/planet")
    for path, ans in zip(items, answers):
        true = sorted(result["labels"][Path(path).stem].split())
        got = sorted(ans.get("tags", []))
        _say(lines, f"  {Path(path).name:>14}  predicted {' '.join(got):<50} true {' '.join(true)}")
    return lines


def query_camvid(base_url: str, result: dict, k: int = 3) -> list[str]:
    """POST a few validation frames to /camvid?format=json; each mask's accuracy against its label file."""
    import numpy as np
    import torch
    from PIL import Image

    from ..client import predict_files
    from ..tasks.camvid import VOID, get_y_fn

    lines: list[str] = []
    items = result["valid_items"][:k]
    _say(lines, f"POST {base_url}/camvid?format=json")
    for path, ans in zip(items, predict_files("camvid", base_url, items)):
        flat = torch.cat([torch.full((n,), c) for c, n in ans["mask"]])
        truth = torch.from_numpy(np.asarray(Image.open(get_y_fn(path, result["labels_dir"]))).astype(np.int64))
        keep = truth.flatten() != VOID
        acc = (flat[keep] == truth.flatten()[keep]).float().mean().item()
        _say(lines, f"  {Path(path).name:>20}  {ans['height']}x{ans['width']} mask, {len(ans['mask'])} runs, "
                    f"pixel accuracy (Void ignored) {acc:.3f}; classes {', '.join(ans['classes_present'])}")
    return lines


def query_head_pose(base_url: str, result: dict, k: int = 4) -> list[str]:
    """POST frames of the held-out person to /headpose; each answer against the calibration's point."""
    from ..client import predict_files
    from ..data.biwi import get_ctr

    lines: list[str] = []
    items = result["valid_items"][:: max(1, len(result["valid_items"]) // k)][:k]
    _say(lines, f"POST {base_url}/headpose")
    for path, ans in zip(items, predict_files("head_pose", base_url, items)):
        row, col = get_ctr(path)[0].tolist()
        err = ((ans["row"] - row) ** 2 + (ans["col"] - col) ** 2) ** 0.5
        _say(lines, f"  {Path(path).parent.name}/{Path(path).name}  predicted ({ans['row']:.1f}, {ans['col']:.1f})  "
                    f"true ({row:.1f}, {col:.1f})  off by {err:.1f} px")
    return lines


def query_sentiment(base_url: str, data_dir: Path, k: int = 4) -> list[str]:
    """POST test reviews (files) and a few hand-written sentences (JSON) to /sentiment."""
    import httpx

    from ..client import predict_files

    lines: list[str] = []
    files = sorted((data_dir / "test" / "pos").glob("*.txt"))[:k // 2] + \
        sorted((data_dir / "test" / "neg").glob("*.txt"))[:k // 2]
    _say(lines, f"POST {base_url}/sentiment")
    for path, ans in zip(files, predict_files("sentiment", base_url, files)):
        _say(lines, f"  test/{path.parent.name}/{path.name:<10}  predicted {ans.get('label', ans)} "
                    f"(p={max(ans.get('probs', {0: 0}).values()):.3f}, {ans.get('tokens')} tokens)")
    with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as client:
        answers = client.post("/sentiment", json={"texts": SENTIMENT_EXAMPLES}).json()["predictions"]
    for text, ans in zip(SENTIMENT_EXAMPLES, answers):
        _say(lines, f"  {text!r:<72} -> {ans['label']} ({ans['probs'][ans['label']]:.3f})")
    return lines
