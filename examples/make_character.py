"""Draw the example character image ``examples/character.png`` (procedural, no inputs).

``python examples/make_character.py [OUT.png]`` rewrites it. A flat-shaded figure standing in a
T-ish pose on white, 256x384 RGB: the kind of full-body reference image MIMO expects (the preview
backend ignores it; the MIMO backend animates it). Drawn with Pillow shapes only, so the file is
ours to license (CC0, see examples/README.md).
"""
from __future__ import annotations

import pathlib
import sys

from PIL import Image, ImageDraw

SIZE = (256, 384)
SKIN, HAIR = (222, 178, 146), (70, 45, 30)
SHIRT, SHIRT_DARK = (196, 64, 52), (160, 48, 40)
TROUSERS, SHOES = (46, 62, 96), (35, 30, 30)


def draw_character() -> Image.Image:
    """The figure, centred, feet near the bottom edge. Returns an RGB image of ``SIZE``."""
    img = Image.new("RGB", SIZE, "white")
    d = ImageDraw.Draw(img)
    cx = SIZE[0] // 2
    # legs and shoes
    d.polygon([(cx - 30, 210), (cx - 2, 210), (cx - 6, 340), (cx - 28, 340)], fill=TROUSERS)
    d.polygon([(cx + 2, 210), (cx + 30, 210), (cx + 28, 340), (cx + 6, 340)], fill=TROUSERS)
    d.rounded_rectangle((cx - 34, 336, cx - 4, 352), radius=6, fill=SHOES)
    d.rounded_rectangle((cx + 4, 336, cx + 34, 352), radius=6, fill=SHOES)
    # arms (slightly lowered), hands
    d.polygon([(cx - 34, 100), (cx - 24, 120), (cx - 78, 196), (cx - 92, 186)], fill=SHIRT_DARK)
    d.polygon([(cx + 34, 100), (cx + 24, 120), (cx + 78, 196), (cx + 92, 186)], fill=SHIRT_DARK)
    d.ellipse((cx - 100, 184, cx - 78, 206), fill=SKIN)
    d.ellipse((cx + 78, 184, cx + 100, 206), fill=SKIN)
    # torso, belt, neck, head, hair
    d.rounded_rectangle((cx - 36, 92, cx + 36, 214), radius=14, fill=SHIRT)
    d.rectangle((cx - 34, 202, cx + 34, 212), fill=(60, 40, 30))
    d.rectangle((cx - 8, 80, cx + 8, 96), fill=SKIN)
    d.ellipse((cx - 24, 30, cx + 24, 86), fill=SKIN)
    d.chord((cx - 26, 26, cx + 26, 70), start=180, end=360, fill=HAIR)
    d.ellipse((cx - 12, 52, cx - 6, 58), fill=(40, 30, 30))
    d.ellipse((cx + 6, 52, cx + 12, 58), fill=(40, 30, 30))
    d.arc((cx - 10, 60, cx + 10, 74), start=20, end=160, fill=(150, 80, 70), width=2)
    return img


def main(argv: list[str]) -> int:
    out = pathlib.Path(argv[0]) if argv else pathlib.Path(__file__).with_name("character.png")
    draw_character().save(out, optimize=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
