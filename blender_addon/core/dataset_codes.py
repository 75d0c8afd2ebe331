"""Motion codes of a dataset clip, rendered by the ``mimo`` library's own rasterizer.

The codes of a clip must be the ones the server renders for the same request (the same bodies,
the same camera), so they come from the library, not from a second renderer inside Blender:
``mimo.codes.render_clip`` on the clip's ``motion.npz`` (its bodies and camera track), with the
body model each body names, its default code table, and a hand removed only where a body has no
hand pose — what ``mimo-server`` does for a request (``server/build.py``).

The library needs torch, which Blender's Python usually lacks. So:

* in-process when this Python can import ``mimo.codes`` (a Blender whose Python has the
  project installed, or the ``bpy`` wheel in the project's venv);
* otherwise in a child process: ``PYTHON dataset_codes.py MOTION.npz OUT.npy`` run by a Python
  where mimo-blender is installed (the Library Python option, e.g. ``<repo>/.venv/bin/python``).

Shapes: codes (F, H, W, 3) uint8 (black background), as ``codes.npy`` of the clip layout.
"""
from __future__ import annotations

import os
import subprocess
import sys


def library_available() -> bool:
    """Whether this Python can render codes itself (``mimo`` and torch importable)."""
    import importlib.util

    try:
        return importlib.util.find_spec("mimo") is not None and importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def render_motion_codes(motion_path: str, device: str = "cpu"):
    """The codes of a ``mimo motion`` .npz holding a clip and a camera track (needs ``mimo``).

    Shapes: -> codes (F, H, W, 3) uint8
    """
    from mimo.body import load_body
    from mimo.codes.render import render_clip
    from mimo.motion import load_npz

    clip, camera = load_npz(motion_path)
    if clip is None or camera is None:
        raise ValueError(f"{motion_path}: expected a motion clip and a camera track")
    models: dict = {}
    bodies = [models.setdefault(b.model, load_body(b.model, device=device)) for b in clip.bodies]
    codes, _ = render_clip(clip, camera, bodies, remove_hands="auto", device=device)
    return codes


def write_codes(motion_path: str, out_path: str, python: str = "", timeout: float = 600.0) -> str:
    """Render the codes of ``motion_path`` into ``out_path`` (.npy): in this process when it has
    the library and no ``python`` is given, else with ``python``. Returns how ("in-process" or the
    interpreter). Raises ValueError with one line saying what is missing or what failed."""
    import numpy as np

    if not python:
        if not library_available():
            raise ValueError("codes: this Python has no mimo library (it needs torch) to render the motion "
                             "codes: set Library Python to a Python where mimo-blender is installed "
                             "(e.g. <repository>/.venv/bin/python)")
        np.save(out_path, render_motion_codes(motion_path), allow_pickle=False)
        return "in-process"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ValueError(f"Library Python: {python} is not an executable file")
    try:
        out = subprocess.run([python, os.path.abspath(__file__), motion_path, out_path], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"codes: {python} did not finish within {timeout:.0f} s") from None
    if out.returncode:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        raise ValueError(f"codes: {python} failed: {lines[-1] if lines else f'exit status {out.returncode}'}")
    return python


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: PYTHON dataset_codes.py MOTION.npz OUT.npy", file=sys.stderr)
        return 2
    import numpy as np

    try:
        codes = render_motion_codes(argv[0])
    except ModuleNotFoundError as exc:
        print(f"this Python lacks {exc.name!r}: install mimo-blender here (pip install -e <repository>)",
              file=sys.stderr)
        return 1
    except ValueError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 1
    tmp = argv[1] + ".part.npy"
    np.save(tmp, codes, allow_pickle=False)
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    # run as a script: this folder's modules (errors.py, camera.py ...) must not shadow any other
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    sys.exit(main(sys.argv[1:]))
