"""Make a small MIMO training dataset in headless Blender (the ``bpy`` wheel, Blender 4.2 or later).

    python examples/make_dataset_blender.py --out data/blender_train \
        [--motions examples/motions/walk.npz examples/motions/dance.npz] [--cameras 4] \
        [--frames 16] [--size 256] [--engine WORKBENCH|CYCLES] [--python PY] [--overwrite]

Run it with a Python that has the ``bpy`` wheel (e.g. ``.venv-bpy42/bin/python``). It builds this
scene with the add-on's own operators and writes one clip folder per (motion, camera) — what the
panel's Make Training Dataset button does:

* the character: the open body (Add Body) **painted**, not clothed — its own skinned mesh with five
  flat materials by body part (skin, hair, shirt, trousers, shoes), chosen per face from the joint
  that skins it most. No separate garment mesh: the silhouette is the bare body's;
* a grey floor, a sun, and a dark pillar that slides across in front of the body (so the front
  cameras' clips have an occlusion mask; a camera behind the body sees the pillar behind it);
* the cameras: a ring of ``--cameras`` cameras around what the body sweeps in each motion, the
  first in front of the body;
* the motion codes come from the ``mimo`` library (``--python``: a Python where mimo-blender is
  installed; default: this Python when it has the library, else ``.venv/bin/python`` of this
  repository).

Check the result with ``mimo dataset check OUT``; ``mimo train`` reads it like any clip folder.
The add-on is imported from this source tree (not installed), registered, and unregistered at exit.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTIONS = [os.path.join(REPO, "examples", "motions", n) for n in ("walk.npz", "dance.npz")]
#: body part -> (colour, which joints' vertices wear it); everything else is skin
PALETTE = {"skin": (0.80, 0.60, 0.48), "hair": (0.12, 0.08, 0.05), "shirt": (0.15, 0.35, 0.80),
           "trousers": (0.20, 0.20, 0.24), "shoes": (0.55, 0.30, 0.12)}
PARTS = {"shirt": ("spine", "collar", "shoulder"), "trousers": ("pelvis", "hip", "knee"),
         "shoes": ("ankle", "foot")}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="dataset folder (one clip folder per motion and camera)")
    p.add_argument("--motions", nargs="+", default=MOTIONS, help="motion files (default: walk and dance)")
    p.add_argument("--cameras", type=int, default=4, help="ring cameras around the body (default 4)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (0: the whole motion; default 16)")
    p.add_argument("--size", type=int, default=256, help="clip width and height, a multiple of 8 (default 256)")
    p.add_argument("--engine", choices=("WORKBENCH", "CYCLES"), default="WORKBENCH",
                   help="renderer of the frames and the plate (default WORKBENCH)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples (default 16)")
    p.add_argument("--python", default=None, help="a Python with mimo-blender installed, for the codes")
    p.add_argument("--no-pillar", action="store_true", help="no occluder in the scene")
    p.add_argument("--overwrite", action="store_true", help="replace clip folders of the same names")
    return p.parse_args(argv)


def library_python(given: str | None) -> str:
    """The Library Python: the one given; "" (this process) when it has the library; else the
    repository's .venv."""
    from blender_addon.core.dataset_codes import library_available

    if given is not None:
        return given
    if library_available():
        return ""
    venv = os.path.join(REPO, ".venv", "bin", "python")
    if os.path.isfile(venv):
        return venv
    raise SystemExit("make_dataset_blender: no mimo library here and no .venv/bin/python in the repository: "
                     "pass --python PATH (a Python where mimo-blender is installed)")


def paint_character(rig) -> None:
    """Give the rig's body mesh five materials by body part (see PALETTE/PARTS)."""
    import bpy
    import numpy as np

    from blender_addon.bl import rig_builder

    data = rig_builder.rig_data(rig["mimo_rig_data"])
    mesh = bpy.data.objects[rig["mimo_mesh"]].data
    owner = [data.joint_names[j] for j in data.skin_weights.argmax(1)]
    _, head_y, head_z = data.rest_joints[data.joint_names.index("head")]
    region = []
    for v, name in enumerate(owner):
        part = next((p for p, keys in PARTS.items() if any(k in name for k in keys)), "skin")
        _, y, z = data.rest_vertices[v]
        if name == "head" and (y > head_y + 0.04 or (y > head_y - 0.02 and z < head_z - 0.03)):
            part = "hair"  # the crown, and the back of the head (the body faces +Z)
        region.append(part)
    names = list(PALETTE)
    for part in names:
        mat = bpy.data.materials.new(f"MIMO {part}")
        mat.diffuse_color = (*PALETTE[part], 1.0)  # what Workbench shows
        _use_nodes(mat)
        mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*PALETTE[part], 1.0)
        mesh.materials.append(mat)
    index = np.array([names.index(region[p.vertices[0]]) for p in mesh.polygons], np.int32)
    mesh.polygons.foreach_set("material_index", index)
    mesh.update()


def build_scene(pillar: bool = True, frames: int = 16):
    """An empty scene with the painted open body standing at the origin (facing -Y), a floor, a
    sun and (``pillar``) a pillar crossing in front of it over ``frames`` frames. Returns the rig."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    import blender_addon

    blender_addon.register()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_start, scene.frame_end = 1, max(1, frames)
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "MATERIAL"
    scene.view_settings.view_transform = "Standard"  # the materials' colours, not a film look
    world = bpy.data.worlds.new("MIMO World")
    world.color = (0.55, 0.62, 0.70)
    _use_nodes(world)
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.55, 0.62, 0.70, 1.0)
    scene.world = world
    assert bpy.ops.mimo.add_body() == {"FINISHED"}
    rig = bpy.context.active_object
    paint_character(rig)
    bpy.ops.mesh.primitive_plane_add(size=30.0, location=(0.0, 0.0, 0.0))
    floor = bpy.context.active_object
    floor.name = "Floor"
    floor.data.materials.append(_material("MIMO floor", (0.45, 0.42, 0.38)))
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (0.6, 0.2, 0.4)
    scene.collection.objects.link(sun)
    if pillar:
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(-0.9, -0.7, 1.1))
        box = bpy.context.active_object
        box.name = "Pillar"
        box.scale = (0.12, 0.12, 0.45)
        box.data.materials.append(_material("MIMO pillar", (0.10, 0.45, 0.15)))
        box.keyframe_insert("location", frame=scene.frame_start)
        box.location.x = 0.9
        box.keyframe_insert("location", frame=scene.frame_end)
    bpy.context.view_layer.objects.active = rig
    return rig


def _use_nodes(owner) -> None:
    """Node trees are always on from Blender 5.0 (the switch is deprecated there)."""
    import bpy

    if bpy.app.version < (5, 0, 0):
        owner.use_nodes = True


def _material(name: str, rgb: tuple):
    import bpy

    mat = bpy.data.materials.new(name)
    mat.diffuse_color = (*rgb, 1.0)
    _use_nodes(mat)
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


def make_dataset(args: argparse.Namespace) -> list[str]:
    import bpy

    from blender_addon.bl.dataset import DatasetOptions, DatasetWriter

    build_scene(pillar=not args.no_pillar, frames=args.frames or 16)
    options = DatasetOptions(out_dir=os.path.abspath(args.out), motions=[os.path.abspath(m) for m in args.motions],
                             cameras="RING", ring_count=args.cameras, frames=args.frames, width=args.size,
                             height=args.size, engine=args.engine, samples=args.samples,
                             overwrite=args.overwrite, python=library_python(args.python))
    writer = DatasetWriter(bpy.context.scene, options)
    last = 0.0
    for fraction, status in writer.steps():
        if time.monotonic() - last > 2.0 or fraction >= 1.0:
            print(f"[{fraction:6.1%}] {status}", file=sys.stderr, flush=True)
            last = time.monotonic()
    for w in writer.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return writer.written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import blender_addon
    from blender_addon.core.errors import AddonError

    t0 = time.monotonic()
    try:
        written = make_dataset(args)
    except AddonError as exc:
        print(f"make_dataset_blender: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            blender_addon.unregister()  # Blender 4.2 crashes at exit with the add-on registered
        except Exception:
            pass
    print(f"wrote {len(written)} clips to {args.out} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
