"""Scene and occlusion layers rendered by Blender itself, exact where MIMO estimates.

* Scene plate: the scene rendered without the MIMO bodies (engine: Workbench, Cycles, or the
  scene's own), per frame.
* Occlusion mask: two flat, un-antialiased Workbench renders — bodies white and everything else
  black, once with the whole scene and once with the bodies alone. A pixel is occluded where the
  body alone is visible but the body in the scene is not: the renderer's own depth test decides,
  no depth pass is read back.

Renders run on the main thread (Workbench ~0.1-0.5 s per frame on CPU); every setting touched is
restored afterwards. Post Processing (sequencer, compositor) is off while they render: once a
result's strip is in the sequencer, Blender's render would otherwise be that strip. Frames are
rendered at the render size and cropped/rescaled exactly like the camera track (bl/camera.py), so
layer pixels line up with the motion codes.

Shapes: scene (F, H, W, 3) uint8, occlusion (F, H, W) uint8 (0 or 255)
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import bpy
import numpy as np

from ..core.camera import aspect_crop

ENGINES = {"WORKBENCH": "BLENDER_WORKBENCH", "CYCLES": "CYCLES"}


def body_objects(rigs: list[bpy.types.Object]) -> list[bpy.types.Object]:
    out = []
    for rig in rigs:
        out.append(rig)
        out.extend(c for c in rig.children_recursive)
    return out


@contextlib.contextmanager
def _saved(*pairs):
    """Set (owner, attribute, value) triples and restore them on exit."""
    old = []
    try:
        for owner, attr, value in pairs:
            cur = getattr(owner, attr)
            if not isinstance(cur, (str, bytes)) and hasattr(cur, "__len__"):
                cur = tuple(cur)  # bpy arrays are live views: keep a copy
            old.append((owner, attr, cur))
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, value in reversed(old):
            setattr(owner, attr, value)


def render_rgba(scene: bpy.types.Scene, path: str) -> np.ndarray:
    """Render the current frame to ``path`` (removed afterwards); RGBA float (H, W, 4), top row first."""
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(path)
    try:
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    os.remove(path)
    return px.reshape(h, w, 4)[::-1]


def _render(scene: bpy.types.Scene, path: str) -> np.ndarray:
    """Render the current frame to ``path`` and return RGB float (H, W, 3), top row first."""
    return render_rgba(scene, path)[:, :, :3]


def _fit(a: np.ndarray, width: int, height: int, crop: bool) -> np.ndarray:
    """Centre-crop (to multiples of 8, as the camera track does) or, like the camera track with
    an output size, crop to the output's aspect and nearest-rescale (x and y alike)."""
    H, W = a.shape[:2]
    if crop:
        y0, x0 = (H - height) // 2, (W - width) // 2
        return a[y0:y0 + height, x0:x0 + width]
    x0, y0, cw, ch = aspect_crop(W, H, width, height)
    ys = np.clip(np.floor(y0 + (np.arange(height) + 0.5) * ch / height).astype(int), 0, H - 1)
    xs = np.clip(np.floor(x0 + (np.arange(width) + 0.5) * cw / width).astype(int), 0, W - 1)
    return a[ys][:, xs]


def render_layers(scene: bpy.types.Scene, rigs: list[bpy.types.Object], frames: list[int], width: int,
                  height: int, crop: bool, plate: bool = True, occlusion: bool = False,
                  engine: str = "WORKBENCH", visible: list | None = None
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Render the plate and/or the occlusion mask for ``frames`` at ``width`` x ``height``; with
    ``visible`` (a list), also append each frame's body mask to it: 255 where a body is seen
    (in front of everything else), 0 elsewhere.

    Shapes: -> scene (F, H, W, 3) uint8 or None, occlusion (F, H, W) uint8 or None,
               visible[f] (H, W) uint8
    """
    if engine not in ENGINES and engine != "SCENE":
        raise ValueError(f"engine: expected WORKBENCH, CYCLES or SCENE, got {engine!r}")
    bodies = body_objects(rigs)
    body_set = {o.name for o in bodies}
    others = [o for o in scene.objects if o.name not in body_set]
    r = scene.render
    fmt = r.image_settings
    keep_frame = scene.frame_current
    plates, masks = [], []
    tmp = tempfile.mkdtemp(prefix="mimo-layers-")
    common = [(fmt, "media_type", "IMAGE")] if hasattr(fmt, "media_type") else []  # 5.0: before the format
    common += [(fmt, "file_format", "PNG"), (fmt, "color_mode", "RGBA"), (fmt, "color_depth", "8"),
               (r, "use_file_extension", True),
               # the sequencer would replace the render by its strips (a previous result, say) and
               # the compositor could alter it: the layers are the 3D scene itself
               (r, "use_sequencer", False), (r, "use_compositing", False)]
    try:
        with _saved(*common, (r, "filepath", r.filepath)):
            for frame in frames:
                scene.frame_set(frame)
                if plate:
                    eng = r.engine if engine == "SCENE" else ENGINES[engine]
                    with _saved((r, "engine", eng), *[(o, "hide_render", True) for o in bodies]):
                        rgb = _render(scene, os.path.join(tmp, "plate.png"))
                    plates.append(_fit(np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8), width, height, crop))
                if occlusion or visible is not None:
                    seen, hidden = _masks(scene, bodies, others, tmp, alone=occlusion)
                    if occlusion:
                        masks.append(_fit(hidden, width, height, crop))
                    if visible is not None:
                        visible.append(_fit(seen, width, height, crop))
    finally:
        scene.frame_set(keep_frame)
        os.rmdir(tmp) if not os.listdir(tmp) else None
    return (np.stack(plates) if plate else None), (np.stack(masks) if occlusion else None)


def _masks(scene, bodies, others, tmp, alone: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(visible body, occluded body) masks, uint8 0/255; the second only with ``alone``."""
    sh = scene.display.shading
    settings = [(scene.render, "engine", "BLENDER_WORKBENCH"), (sh, "light", "FLAT"),
                (sh, "color_type", "OBJECT"), (scene.display, "render_aa", "OFF"),
                (scene.render, "film_transparent", True), (scene.view_settings, "view_transform", "Standard"),
                (scene.view_settings, "look", "None"), (scene.view_settings, "exposure", 0.0),
                (scene.view_settings, "gamma", 1.0), (sh, "show_shadows", False),
                (sh, "show_cavity", False), (sh, "show_object_outline", False),
                (sh, "show_specular_highlight", False)]
    colors = [(o, "color", (1.0, 1.0, 1.0, 1.0)) for o in bodies] + \
             [(o, "color", (0.0, 0.0, 0.0, 1.0)) for o in others]
    with _saved(*settings, *colors):
        in_scene = _render(scene, os.path.join(tmp, "occ_a.png")).mean(axis=2) > 0.5
        if not alone:
            return np.where(in_scene, 255, 0).astype(np.uint8), None
        with _saved(*[(o, "hide_render", True) for o in others]):
            by_itself = _render(scene, os.path.join(tmp, "occ_b.png")).mean(axis=2) > 0.5
    return (np.where(in_scene, 255, 0).astype(np.uint8),
            np.where(by_itself & ~in_scene, 255, 0).astype(np.uint8))
