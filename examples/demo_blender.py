"""The Blender half of `make demo`: runs inside headless Blender (the `bpy` wheel), started by
examples/demo.py in its own process with a temporary BLENDER_USER_RESOURCES.

What a user would do in the UI, done through the add-on's own operators:
 1. install the extension from its built zip and enable it;
 2. build a scene: ground, sun, a pillar that slides between camera and body mid-shot;
 3. Add Body (open body), Import Motion (examples/motions/walk.npz), Add Camera (then a dolly);
 4. set the character image, the server, Scene plate + Occlusion (Workbench);
 5. Generate, and pump the add-on's timer drain (timers never fire in module mode) until done;
 6. save demo.blend (the sequencer strip points at //mimo/demo/frame_*.png);
 7. with ``--mimo-steps N``: Generate the same shot again on the server's MIMO backend (job
    ``demo_mimo``, N sampling steps), a second strip from //mimo/demo_mimo/.

Also writes request.npz: the exact arrays of the request the add-on sent (bodies, camera, scene
plate, occlusion), and blender_result.json (files, strip, stage timings) for demo.py.

    python examples/demo_blender.py --zip Z.zip --server tcp://127.0.0.1:PORT \
        --character IMG --motion CLIP.npz --out DIR [--frames N] [--step S] [--size PX] \
        [--backend preview|mimo] [--steps N] [--mimo-steps N --mimo-roi PX]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import bpy
import numpy as np
from mathutils import Vector

REPO, MODULE = "user_default", "bl_ext.user_default.mimo_blender"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="the Blender half of make demo")
    p.add_argument("--zip", required=True, help="the built extension zip")
    p.add_argument("--server", required=True, help="mimo-server address")
    p.add_argument("--character", required=True, help="character image")
    p.add_argument("--motion", required=True, help="motion file for Import Motion")
    p.add_argument("--out", required=True, help="output folder (demo.blend, request.npz, ...)")
    p.add_argument("--size", type=int, default=256, help="square output size in pixels (multiple of 8)")
    p.add_argument("--frames", type=int, default=0, help="use the first N frames (0: the whole clip)")
    p.add_argument("--step", type=int, default=1, help="scene frame step (generate every S-th frame)")
    p.add_argument("--backend", default="preview", choices=("preview", "mimo"))
    p.add_argument("--steps", type=int, default=25, help="sampling steps (MIMO backend)")
    p.add_argument("--mimo-steps", type=int, default=0,
                   help="then Generate again on the MIMO backend with N steps (0: no second job)")
    p.add_argument("--mimo-roi", type=int, default=0,
                   help="ROI side of that MIMO job (0: the add-on's own, 784)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the whole job")
    a = p.parse_args(argv)
    if a.size < 16 or a.size % 8:
        p.error(f"--size: expected a multiple of 8, at least 16, got {a.size}")
    if a.frames < 0 or a.step < 1:
        p.error("--frames must be >= 0 and --step >= 1")
    return a


class Clock:
    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.stages: list[tuple[str, float]] = []

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        self.stages.append((name, now - self.last))
        print(f"  [blender {now - self.t0:6.1f} s] {name} ({now - self.last:.1f} s)", flush=True)
        self.last = now


def install_addon(zpath: str):
    """Install + enable the zip as a user would (Get Extensions > Install from Disk)."""
    if not os.path.isfile(zpath):
        raise SystemExit(f"demo_blender: extension zip not found: {zpath}")
    bpy.ops.extensions.package_install_files(filepath=zpath, repo=REPO, enable_on_install=True)
    if MODULE not in sys.modules or not hasattr(bpy.ops.mimo, "generate"):
        raise SystemExit(f"demo_blender: {zpath} installed but {MODULE} is not enabled")
    return importlib.import_module(MODULE)


def material(name: str, rgba: tuple) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = rgba  # what Workbench (colour type: material) shows
    return mat


def build_set(scene: bpy.types.Scene) -> None:
    """Ground plane, sun, world colour; Workbench with material colours for the plate."""
    bpy.ops.mesh.primitive_plane_add(size=14.0, location=(0.0, 1.0, 0.0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(material("Ground", (0.36, 0.5, 0.3, 1.0)))
    bpy.ops.object.light_add(type="SUN", location=(2.0, -3.0, 5.0), rotation=(0.7, 0.2, 0.4))
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.55, 0.68, 0.85)
    sh = scene.display.shading
    sh.light, sh.color_type = "STUDIO", "MATERIAL"
    scene.view_settings.view_transform = "Standard"  # plain sRGB colours in the plate


def pelvis_path(rig, scene, frames: list[int]) -> list[Vector]:
    """World position of the rig's pelvis bone at each of ``frames``."""
    out = []
    for f in frames:
        scene.frame_set(f)
        out.append(rig.matrix_world @ rig.pose.bones["pelvis"].head)
    return out


def key(obj, frame: int, location, rotation=None) -> None:
    obj.location = location
    obj.keyframe_insert("location", frame=frame)
    if rotation is not None:
        obj.rotation_euler = rotation
        obj.keyframe_insert("rotation_euler", frame=frame)


def look_rotation(eye: Vector, target: Vector):
    return (target - eye).to_track_quat("-Z", "Y").to_euler()


def animate_shot(scene, rig, camera) -> dict:
    """The camera trucks sideways and dollies in a little while it pans to follow the walker, and a pillar sliding across the line of
    sight so that it hides the body around the middle of the shot."""
    f0, f1 = scene.frame_start, scene.frame_end
    p0, p1 = pelvis_path(rig, scene, [f0, f1])
    eye0 = Vector((p0.x - 1.2, p0.y - 3.6, 1.2))
    eye1 = Vector((p1.x + 0.6, p1.y - 3.2, 1.0))
    key(camera, f0, eye0, look_rotation(eye0, p0))
    key(camera, f1, eye1, look_rotation(eye1, p1))
    # the pillar: halfway between camera and body, crossing from one side to the other
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    pillar = bpy.context.active_object
    pillar.name = "Pillar"
    pillar.scale = (0.3, 0.3, 1.3)
    pillar.data.materials.append(material("Pillar", (0.75, 0.45, 0.2, 1.0)))
    a, b = (eye0 + p0) / 2, (eye1 + p1) / 2
    key(pillar, f0, (a.x - 0.6, a.y, 0.65))
    key(pillar, f1, (b.x + 0.6, b.y, 0.65))
    return {"pelvis_start": list(p0), "pelvis_end": list(p1)}


def pump(timers, scene, limit_s: float) -> tuple[object, str]:
    """What the timer does in a UI session: drain every 50 ms until the job ends."""
    job = timers.active(scene)
    if job is None:
        raise SystemExit("demo_blender: Generate started no job")
    start, shown = time.monotonic(), ""
    while time.monotonic() - start < limit_s:
        timers.drain_all()
        if scene.mimo.status != shown and (job.received % 10 == 0 or job.state != "running"):
            shown = scene.mimo.status
            print(f"    {shown}", flush=True)
        if job.state != "running":
            return job, job.state
        time.sleep(0.05)
    timers.cancel(scene)
    raise SystemExit(f"demo_blender: the job did not finish within {limit_s:.0f} s ({scene.mimo.status})")


def save_request(path: str, req) -> None:
    """The arrays of the request exactly as sent (wire axes, OpenCV camera)."""
    arrays = {"fps": np.asarray(req.fps), "width": np.asarray(req.width), "height": np.asarray(req.height),
              "K": req.camera.K, "R": req.camera.R, "t": req.camera.t,
              "scene": req.scene, "occlusion": req.occlusion, "body_model": np.asarray(req.body_model)}
    for i, b in enumerate(req.bodies):
        for k in ("global_orient", "body_pose", "transl", "betas", "left_hand_pose", "right_hand_pose"):
            if getattr(b, k, None) is not None:
                arrays[f"body{i}.{k}"] = np.asarray(getattr(b, k))
    np.savez_compressed(path, num_bodies=np.asarray(len(req.bodies)),
                        **{k: v for k, v in arrays.items() if v is not None})


def generate_mimo(a, scene, timers, vse, clock) -> dict:
    """The same shot again, on the MIMO backend: a second Generate, a second strip.

    The add-on asks every MIMO job for 784² ROI crops (it has no ROI-size control); a small model
    on a CPU needs small crops, so with ``--mimo-roi`` this wraps the add-on's request builder to
    ask for that side instead. Everything else is the add-on's own request."""
    s = scene.mimo
    if a.mimo_roi:
        import dataclasses

        operators = importlib.import_module(MODULE + ".bl.operators")
        build = operators.build_request
        operators.build_request = lambda *args, **kw: dataclasses.replace(build(*args, **kw), roi_size=a.mimo_roi)
    s.backend, s.job_name, s.steps, s.connect_timeout = "mimo", "demo_mimo", a.mimo_steps, 120.0
    if bpy.ops.mimo.generate() != {"FINISHED"}:
        raise SystemExit(f"demo_blender: Generate (MIMO backend) failed: {s.last_error}")
    clock.stage(f"Generate on the MIMO backend: {timers.active(scene).client.request.num_frames} frames, "
                f"{a.mimo_steps} steps, ROI {a.mimo_roi or 784}²")
    job, state = pump(timers, scene, a.timeout)
    if state != "done":
        raise SystemExit(f"demo_blender: the MIMO job ended {state}: {s.last_error}")
    strips = [st for st in vse.all_strips(scene) if st.type == "IMAGE"]
    if len(strips) != 2:
        raise SystemExit(f"demo_blender: expected two image strips, got {len(strips)}")
    bpy.ops.wm.save_mainfile()
    clock.stage(f"received {job.received} MIMO frames into {s.job_dir}; saved demo.blend")
    mine = [st for st in strips if "demo_mimo" in bpy.path.abspath(st.directory)]
    return {"job_dir": s.job_dir, "files": sorted(os.listdir(s.job_dir)), "strip": mine[0].name if mine else ""}


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    clock = Clock()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    install_addon(os.path.abspath(a.zip))
    timers = importlib.import_module(MODULE + ".bl.timers")
    vse = importlib.import_module(MODULE + ".bl.vse")
    clock.stage(f"installed {os.path.basename(a.zip)} and enabled {MODULE}")
    try:
        scene = bpy.context.scene
        r = scene.render
        r.fps, r.fps_base = 30, 1.0
        r.resolution_x = r.resolution_y = a.size
        r.resolution_percentage = 100
        build_set(scene)
        scene.cursor.location = (0.0, 0.0, 0.0)
        if bpy.ops.mimo.add_body() != {"FINISHED"}:
            raise SystemExit("demo_blender: Add Body failed")
        rig = bpy.context.active_object
        if bpy.ops.mimo.import_motion(filepath=os.path.abspath(a.motion)) != {"FINISHED"}:
            raise SystemExit("demo_blender: Import Motion failed")
        imported = scene.frame_end - scene.frame_start + 1
        if a.frames:
            scene.frame_end = scene.frame_start + min(a.frames, imported) - 1
        scene.frame_step = a.step
        if bpy.ops.mimo.add_camera() != {"FINISHED"}:
            raise SystemExit("demo_blender: Add Camera failed")
        path = animate_shot(scene, rig, scene.mimo.camera)
        s = scene.mimo
        s.character, s.server, s.job_name = os.path.abspath(a.character), a.server, "demo"
        s.connect_timeout = 120.0 if a.backend == "mimo" else 30.0  # silence allowed between events
        s.scene_plate, s.occlusion, s.plate_engine, s.backend = True, True, "WORKBENCH", a.backend
        s.steps = a.steps
        blend = os.path.join(out, "demo.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend)  # frames then land in //mimo/demo/
        clock.stage(f"built the shot: {imported} frames imported at 30 fps, using frames "
                    f"{scene.frame_start}-{scene.frame_end} step {scene.frame_step}, {a.size}x{a.size}")

        if bpy.ops.mimo.generate() != {"FINISHED"}:  # renders the plate + occlusion, then submits
            raise SystemExit(f"demo_blender: Generate failed: {s.last_error}")
        job = timers.active(scene)
        request = job.client.request
        clock.stage(f"Generate: scene plate + occlusion rendered (Workbench), {request.num_frames} "
                    f"frames submitted to {a.server}")
        job, state = pump(timers, scene, a.timeout)
        if state != "done":
            raise SystemExit(f"demo_blender: the job ended {state}: {s.last_error}")
        strips = [st for st in vse.all_strips(scene) if st.type == "IMAGE"]
        if len(strips) != 1:
            raise SystemExit(f"demo_blender: expected one image strip, got {len(strips)}")
        clock.stage(f"received {job.received} frames into {s.job_dir}; strip {strips[0].name!r} "
                    f"in channel {strips[0].channel}")
        save_request(os.path.join(out, "request.npz"), request)
        bpy.ops.wm.save_mainfile()
        clock.stage("saved demo.blend and request.npz")
        result = {"blend": blend, "job_dir": s.job_dir, "files": sorted(os.listdir(s.job_dir)),
                  "strip": strips[0].name, "strip_frames": len(strips[0].elements),
                  "num_frames": request.num_frames, "stages": clock.stages, **path}
        if a.mimo_steps:
            result["mimo"] = generate_mimo(a, scene, timers, vse, clock)
            result["stages"] = clock.stages
        with open(os.path.join(out, "blender_result.json"), "w") as f:
            json.dump(result, f, indent=1)
    finally:
        bpy.ops.preferences.addon_disable(module=MODULE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
