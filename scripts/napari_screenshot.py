"""Open a cryomine run folder in napari through cryomine's reader plugin and save a screenshot of the canvas.

Needs napari with a Qt binding and a display: headless, run it under Xvfb (``xvfb-run -a python
scripts/napari_screenshot.py RUN_FOLDER OUT.png``; Qt's offscreen platform has no OpenGL for napari's canvas).
Prints one JSON line: the layers (name, type, visible, size) and the screenshot's shape, for tests and docs.

Usage: ``xvfb-run -a .venv/bin/python scripts/napari_screenshot.py runs/project/out docs/napari.png [--size 900,700]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.gettempdir()) / "cryomine-napari-settings.yaml"))

import imageio.v3 as iio  # noqa: E402  (napari's dependency)
import napari  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", default="900,700", help="window width,height (pixels)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split(","))
    viewer = napari.Viewer(show=False)
    viewer.window._qt_window.resize(width, height)
    layers = viewer.open(str(args.folder), plugin="cryomine")
    viewer.dims.ndisplay = 2
    viewer.reset_view()
    viewer.screenshot(canvas_only=False, flash=False)  # the first grab sizes the hidden canvas
    image = viewer.screenshot(canvas_only=True, flash=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, image)
    info = [{"name": layer.name, "type": type(layer).__name__.lower(), "visible": bool(layer.visible),
             "n": int(len(layer.data)) if type(layer).__name__ == "Points" else None} for layer in layers]  # fmt: skip
    print(json.dumps({"layers": info, "shape": list(image.shape)}))
    viewer.close()


if __name__ == "__main__":
    main()
