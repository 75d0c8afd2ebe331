"""`make demo`: the main job on embedded defaults.

For now (foundation) it reports the environment the rest of the product runs in; later issues
turn it into the full Blender -> server -> VSE demo.
"""
from __future__ import annotations

import time

from mimo.env import environment_report


def main() -> int:
    t0 = time.perf_counter()
    print("mimo-blender demo")
    for key, value in environment_report().items():
        print(f"{key:>20}: {value}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
