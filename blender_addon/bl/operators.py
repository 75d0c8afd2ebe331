"""Operators of the MIMO panel. Each turns the core's errors into ``self.report`` + CANCELLED."""
from __future__ import annotations

import os

import bpy
import numpy as np
from bpy.props import EnumProperty, StringProperty
from mathutils import Vector

from ..core.errors import AddonError
from ..core.frames import FrameRange, new_job_dir
from ..core.request import GenerateSettings, auto_roi_size, build_request, check_roi_size, is_loopback
from . import prefs, props, rig_builder

#: custom property of a rig placed by Add Body: height (m) of its origin above its floor
FLOOR_KEY = "mimo_floor_offset"


def show_capabilities(s, caps: dict) -> None:
    """Keep what a server reported (``core.client.capabilities_dict``) for the panel: a line to
    show, and the backends and modes it offers (the panel's lists)."""
    s.capabilities = f"{caps['server']} on {caps['device'] or '?'}; backends {', '.join(caps['backends'])}" + (
        f"; modes {', '.join(caps['modes'])}" if caps.get("modes") else "")
    summaries = caps.get("backend_summaries") or {}
    s.server_backends = props.reported_lines({b: summaries.get(b) or props.KNOWN_BACKENDS.get(b, "")
                                              for b in caps["backends"]})
    s.server_modes = props.reported_lines(caps.get("modes") or {})
    s.server_max_side = int((caps.get("limits") or {}).get("max_side") or 0)


def _fail(op: bpy.types.Operator, exc: Exception) -> set[str]:
    op.report({"ERROR"}, str(exc))
    return {"CANCELLED"}


def frame_range(scene: bpy.types.Scene) -> FrameRange:
    r = scene.render
    return FrameRange.from_scene_values(scene.frame_start, scene.frame_end, scene.frame_step, r.fps, r.fps_base)


class _OpensFileBrowser:
    """An operator whose ``filepath`` is picked in the file browser before it runs."""

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


def motion_on_rig(rig: bpy.types.Object, path: str, fps: float):
    """A motion file (mimo clip / AMASS / SMPL .npz, SMPL .pkl, BVH) read for ``rig``: retargeted
    to its rest joints and resampled to ``fps``. Returns the clip and the rig's keys, axis-angles
    ``(F, J, 3)`` and root translations ``(F, 3)``, the clip's floor put under the rig."""
    from ..core import motion_io

    data = rig_builder.rig_data(rig["mimo_rig_data"])
    _, joints = data.shaped(rig_builder.betas_of(rig) if data.num_betas else None)
    clip = motion_io.read_motion(path, rest_joints=joints, fps=fps)
    aa, transl = motion_io.clip_to_rig(clip, fps)
    # the clip's world has its floor at y = 0 (wire up); a rig placed by Add Body has its
    # origin at the rest pelvis, FLOOR_KEY metres above the floor it stands on
    return clip, aa, transl - np.array([0.0, float(rig.get(FLOOR_KEY, 0.0)), 0.0])


def clip_placement(rig: bpy.types.Object) -> np.ndarray:
    """Where ``motion_on_rig`` puts a clip's world (Blender axes, ``(4, 4)``): the rig's transform
    without scale, lowered to the floor it stands on."""
    from mathutils import Matrix

    floor = Matrix.Translation((0.0, 0.0, -float(rig.get(FLOOR_KEY, 0.0))))
    return np.array([list(r) for r in rig.matrix_world.normalized() @ floor])


def clip_frames(scene: bpy.types.Scene, num_frames: int) -> list[int]:
    """The scene frames a clip of ``num_frames`` is keyed on: from the scene's first frame, one apart."""
    return list(range(scene.frame_start, scene.frame_start + num_frames))


def scene_rigs(scene: bpy.types.Scene) -> list[bpy.types.Object]:
    return [o for o in scene.objects if rig_builder.is_rig(o) and not o.hide_render]


def settings_of(scene: bpy.types.Scene) -> GenerateSettings:
    s = scene.mimo
    backend = prefs.backend_of(s)
    backends, modes = props.offered(s.server_backends), props.offered(s.server_modes)
    if backends and backend not in backends:
        raise AddonError(f"backend: the server offers {', '.join(backends)}, not {backend!r}")
    if modes and s.mode not in modes:
        raise AddonError(f"mode: the server offers {', '.join(modes)}, not {s.mode!r}")
    if not s.roi_auto:
        try:
            check_roi_size(s.roi_size, s.server_max_side)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
    return GenerateSettings(server=prefs.server_of(s), timeout=s.connect_timeout, backend=backend, mode=s.mode,
                            character=bpy.path.abspath(s.character) if s.character else "", steps=s.steps,
                            cfg=s.cfg, seed=s.seed, job_name=s.job_name, fps=frame_range(scene).fps,
                            roi_size=None if s.roi_auto else s.roi_size)


def output_size(scene: bpy.types.Scene, width: int, height: int) -> tuple[int, int]:
    """The size sent for the Width/Height settings (0: from the render; see core.camera)."""
    from ..core.camera import output_size as size

    r = scene.render
    return size(r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100,
                width, height)


def collect_shot(scene: bpy.types.Scene, warnings: list[str] | None = None) -> dict:
    """Read the scene's bodies (their evaluated pose, as the viewport shows it) and camera.
    What the bodies cannot follow (a scaled bone, a moved non-root bone) is appended to
    ``warnings``, one line per rig.

    -> rigs, frames (scene frames), body_model, bodies (wire fields per body), track (camera),
       sized (Width/Height given: the render is cropped to their aspect)
    """
    from .camera import camera_track

    fr = frame_range(scene)
    rigs = scene_rigs(scene)
    if not rigs:
        raise AddonError("no MIMO body in the scene: add one with 'Add Body'")
    cam = scene.mimo.camera or scene.camera
    if cam is None or cam.type != "CAMERA":
        raise AddonError("no camera: pick one in the panel or set the scene camera")
    frames = fr.scene_frames
    kinds = {rig_builder.rig_data(r["mimo_rig_data"]).kind for r in rigs}
    if len(kinds) != 1:
        raise AddonError(f"all bodies of a shot must use one body model, got {sorted(kinds)}")
    bodies = []
    for rig in rigs:
        p = rig_builder.read_pose(rig, scene, frames)
        if p["issue"] and warnings is not None:
            warnings.append(p["issue"])
        bodies.append({k: p[k] for k in ("global_orient", "body_pose", "transl", "betas",
                                         "left_hand_pose", "right_hand_pose") if k in p})
    sized = bool(scene.mimo.width or scene.mimo.height)  # else the render size, cut to multiples of 8
    w, h = output_size(scene, scene.mimo.width, scene.mimo.height) if sized else (None, None)
    track = camera_track(scene, cam, frames, w, h)
    return {"rigs": rigs, "frames": frames, "body_model": kinds.pop(), "bodies": bodies, "track": track,
            "sized": sized, "fps": fr.fps}


def collect_request(scene: bpy.types.Scene, warnings: list[str] | None = None):
    """Read the scene into the wire request: :func:`collect_shot`, and the layers asked for."""
    settings = settings_of(scene)
    shot = collect_shot(scene, warnings)
    settings.body_model = shot["body_model"]
    track = shot["track"]
    plate = occ = None
    if scene.mimo.scene_plate or scene.mimo.occlusion:  # occlusion composites scene pixels: needs both
        from .layers import render_layers

        plate, occ = render_layers(scene, shot["rigs"], shot["frames"], track["width"], track["height"],
                                   crop=not shot["sized"], plate=True, occlusion=scene.mimo.occlusion,
                                   engine=scene.mimo.plate_engine)
    return build_request(settings, shot["bodies"], track, scene=plate, occlusion=occ)


def collect_passes(scene: bpy.types.Scene, warnings: list[str] | None = None):
    """Several characters in one shot (bodies with their own character image): one request per
    body — its character, the shared plate, its occlusion by the scene (not by the other bodies)
    — and the mask of where each body is seen (in front of the scene and the other bodies).
    Returns (requests, masks (N, F, H, W) uint8), or (None, None) for a shot of one character."""
    from .layers import _saved, body_objects, render_layers

    rigs = scene_rigs(scene)
    if len(rigs) < 2 or not any(r.mimo_character.strip() for r in rigs):
        return None, None
    shot = collect_shot(scene, warnings)
    rigs, frames, track = shot["rigs"], shot["frames"], shot["track"]
    s = scene.mimo
    W, H, crop = track["width"], track["height"], not shot["sized"]
    plate = occ = None
    if s.scene_plate or s.occlusion:
        plate, _ = render_layers(scene, rigs, frames, W, H, crop=crop, plate=True, engine=s.plate_engine)
    requests, masks = [], []
    for k, rig in enumerate(rigs):
        settings = settings_of(scene)
        settings.body_model = shot["body_model"]
        if rig.mimo_character.strip():
            settings.character = bpy.path.abspath(rig.mimo_character)
        if s.occlusion:
            others = [o for r in rigs if r is not rig for o in body_objects([r])]
            with _saved(*[(o, "hide_render", True) for o in others]):
                _, occ = render_layers(scene, [rig], frames, W, H, crop=crop, plate=False, occlusion=True)
        seen: list = []
        render_layers(scene, [rig], frames, W, H, crop=crop, plate=False, visible=seen)
        masks.append(np.stack(seen))
        try:
            requests.append(build_request(settings, [shot["bodies"][k]], track, scene=plate, occlusion=occ))
        except ValueError as exc:
            raise AddonError(f"{rig.name}: {exc}") from None
    return requests, np.stack(masks)


def shot_summary(scene: bpy.types.Scene) -> str:
    """One line before Generate: what will be sent (frames, fps, size, bodies, backend)."""
    s = scene.mimo
    try:
        fr = frame_range(scene)
        w, h = output_size(scene, s.width, s.height)
    except ValueError as exc:
        return str(exc)
    n = len(scene_rigs(scene))
    step = f", every {fr.step}" if fr.step > 1 else ""
    backend = prefs.backend_of(s)
    steps = f"{s.steps} steps" if s.steps else "the mode's steps"
    if backend == "mimo":  # (the ROI is MIMO's: the preview draws the whole frame)
        if s.roi_auto:
            roi = f"ROI {auto_roi_size(w, h)} (automatic)"
        else:
            try:
                check_roi_size(s.roi_size, s.server_max_side)
            except ValueError as exc:
                return str(exc)
            roi = f"ROI {s.roi_size}"
        backend = f"MIMO {s.mode}, {steps}, {roi}"
    from . import timers

    last = timers.last(scene)  # the server's capabilities carry no speed: the last job's does
    estimate = ""
    if last is not None and last.seconds_per_frame and last.backend == prefs.backend_of(s) and all(last.size):
        secs = last.seconds_per_frame * len(fr) * (w * h) / (last.size[0] * last.size[1])
        estimate = f", about {secs:.0f} s" if secs < 120 else f", about {secs / 60:.0f} min"
        estimate += " (from the last job)"
    return (f"Sends {len(fr)} frames ({fr.start}-{fr.end}{step}) at {fr.fps:g} fps, {w}x{h}, "
            f"{n} {'body' if n == 1 else 'bodies'}, {backend}{estimate}")


class _AddBody:
    """Shared by the two Add Body operators (registered operator classes must not subclass each
    other: Blender then loses track of the parent's Python class)."""

    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            rig = rig_builder.build_rig(self.filepath or rig_builder.OPEN_BODY)
        except (AddonError, ValueError, OSError) as exc:
            return _fail(self, exc)
        # stand on the cursor: the body's rest pelvis is its origin, so lift the feet to it
        data = rig_builder.rig_data(rig["mimo_rig_data"])
        lift = -float(data.rest_vertices[:, 1].min())
        rig.location = context.scene.cursor.location + Vector((0.0, 0.0, lift))
        rig[FLOOR_KEY] = lift  # Import Motion puts a clip's floor (y = 0) here, not at the pelvis
        for o in context.view_layer.objects:
            o.select_set(False)
        rig.select_set(True)
        context.view_layer.objects.active = rig
        return {"FINISHED"}


class MIMO_OT_add_body(_AddBody, bpy.types.Operator):
    bl_idname = "mimo.add_body"
    bl_label = "Add Body"
    bl_description = "Add a MIMO body rig (SMPL-H skeleton, skinned mesh, T-pose) at the 3D cursor"

    filepath: StringProperty(name="Body data", subtype="FILE_PATH", default="",
                             description="Rig data .npz (empty: the open body shipped with the add-on)")


class MIMO_OT_add_body_file(_OpensFileBrowser, _AddBody, bpy.types.Operator):
    bl_idname = "mimo.add_body_file"
    bl_label = "Add Body From File"
    bl_description = ("Add a body from a licensed SMPL-H / SMPL-X .npz model file or a rig data .npz "
                      "written by mimo.body.export_rig_data")

    filepath: StringProperty(name="Body data", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})


class MIMO_OT_add_camera(bpy.types.Operator):
    bl_idname = "mimo.add_camera"
    bl_label = "Add Camera"
    bl_description = "Add a camera 4 m in front of the origin, looking at a standing body, and use it"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        data = bpy.data.cameras.new("MIMO Camera")
        cam = bpy.data.objects.new("MIMO Camera", data)
        context.scene.collection.objects.link(cam)
        cam.location = (0.0, -4.0, 1.0)
        cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
        context.scene.camera = cam
        context.scene.mimo.camera = cam
        return {"FINISHED"}


class MIMO_OT_pick_camera(bpy.types.Operator):
    bl_idname = "mimo.pick_camera"
    bl_label = "Use Active Camera"
    bl_description = "Use the active camera object for the shot"

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "CAMERA"

    def execute(self, context):
        context.scene.mimo.camera = context.active_object
        return {"FINISHED"}


class MIMO_OT_import_motion(_OpensFileBrowser, bpy.types.Operator):
    bl_idname = "mimo.import_motion"
    bl_label = "Import Motion"
    bl_description = ("Keyframe a motion onto the active body: mimo clip / AMASS / SMPL parameter .npz, "
                      "SMPL .pkl or BVH (retargeted), resampled to the scene fps")
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.npz;*.pkl;*.bvh", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return rig_builder.is_rig(context.active_object)

    def execute(self, context):
        scene = context.scene
        try:
            rig = context.active_object
            fps = frame_range(scene).fps
            clip, aa, transl = motion_on_rig(rig, bpy.path.abspath(self.filepath), fps)
            frames = clip_frames(scene, len(aa))
            rig_builder.keyframe_pose(rig, aa, transl, frames)
        except (AddonError, ValueError, OSError) as exc:
            return _fail(self, exc)
        scene.frame_end = frames[-1]
        self.report({"INFO"}, f"imported {len(frames)} frames at {fps:g} fps from {clip.fps:g} fps")
        return {"FINISHED"}


class MIMO_OT_retarget(bpy.types.Operator):
    bl_idname = "mimo.retarget"
    bl_label = "Retarget From Selected"
    bl_description = ("Bake the motion of the selected armature (Mixamo, Rigify, CMU BVH, SMPL names; "
                      "auto-detected) onto the active MIMO body")
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(name="Bone names", items=[
        ("auto", "Auto-detect", "Pick the preset that names the most bones"),
        ("mixamo", "Mixamo", ""), ("rigify", "Rigify", ""), ("cmu_bvh", "CMU BVH", ""),
        ("smpl", "SMPL names", "")], default="auto")

    @classmethod
    def poll(cls, context):
        return rig_builder.is_rig(context.active_object) and any(
            o.type == "ARMATURE" and not rig_builder.is_rig(o) for o in context.selected_objects)

    def execute(self, context):
        from .retarget import retarget_onto

        rig = context.active_object
        source = next(o for o in context.selected_objects if o.type == "ARMATURE" and not rig_builder.is_rig(o))
        try:
            res = retarget_onto(source, rig, context.scene, self.preset)
        except (AddonError, ValueError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"retargeted {len(res['frames'])} frames ({res['preset']}, "
                              f"{len(res['bone_map'])} bones mapped, scale {res['scale']:.4g})")
        return {"FINISHED"}


class MIMO_OT_check_server(bpy.types.Operator):
    bl_idname = "mimo.check_server"
    bl_label = "Check Server"
    bl_description = "Ask the server for its capabilities (waits at most the timeout)"

    def execute(self, context):
        s = context.scene.mimo
        server = prefs.server_of(s)
        if not is_loopback(server) and not bpy.app.online_access:
            return _fail(self, AddonError("online access is off (Preferences > System): "
                                               "a remote server cannot be reached"))
        import zmq

        from ..vendor.client import Client
        from ..vendor.client import MimoClientError as WireError

        try:
            client = Client(server, timeout=s.connect_timeout, name="blender")
        except (zmq.ZMQError, ValueError) as exc:
            s.last_error = f"server: {server!r}: {exc}"
            return _fail(self, AddonError(s.last_error))
        try:
            caps = client.hello()
        except (WireError, ValueError) as exc:
            s.capabilities, s.last_error = "", str(exc)
            return _fail(self, exc)
        finally:
            client.close()
        from ..core.client import capabilities_dict

        show_capabilities(s, capabilities_dict(caps))
        self.report({"INFO"}, s.capabilities)
        return {"FINISHED"}


class MIMO_OT_generate(bpy.types.Operator):
    bl_idname = "mimo.generate"
    bl_label = "Generate"
    bl_description = "Send the shot to the MIMO server and stream the frames into the sequencer"

    @classmethod
    def poll(cls, context):
        from . import timers

        return timers.active(context.scene) is None

    def execute(self, context):
        from ..core.client import JobClient
        from . import timers

        scene = context.scene
        s = scene.mimo
        if not is_loopback(prefs.server_of(s)) and not bpy.app.online_access:
            return _fail(self, AddonError("online access is off (Preferences > System): "
                                               "a remote server cannot be reached"))
        warnings: list[str] = []
        try:
            requests, masks = collect_passes(scene, warnings)
            request = requests[0] if requests else collect_request(scene, warnings)
            root, where = prefs.output_root()
            job_dir = new_job_dir(root, s.job_name)
            if where:  # unsaved .blend: a persistent folder (not Blender's temp), and say which
                warnings.append(where)
        except (AddonError, ValueError, OSError) as exc:
            s.last_error = str(exc)
            return _fail(self, exc)
        if requests:  # several characters: one job each, composited by which body is in front
            from ..core.composite import CompositeClient

            client = CompositeClient(prefs.server_of(s), requests, job_dir, masks, timeout=s.connect_timeout)
        else:
            client = JobClient(prefs.server_of(s), request, job_dir, timeout=s.connect_timeout)
        job = timers.ActiveJob(client=client, scene_name=scene.name, job_dir=job_dir, start_frame=scene.frame_start,
                               total=request.num_frames, hold=scene.frame_step, warning="; ".join(warnings),
                               backend=request.backend, size=(request.width, request.height))
        job.show(scene, status="starting", progress=0.0, error="")
        s.job_dir = job_dir
        for w in warnings:  # said once per Generate, before the job starts
            self.report({"WARNING"}, w)
        timers.start(scene, job)
        return {"FINISHED"}


class MIMO_OT_cancel(bpy.types.Operator):
    bl_idname = "mimo.cancel"
    bl_label = "Cancel"
    bl_description = "Cancel the running generation"

    def execute(self, context):
        from . import timers

        if not timers.cancel(context.scene):
            self.report({"WARNING"}, "no MIMO job is running")
            return {"CANCELLED"}
        return {"FINISHED"}


class MIMO_OT_add_result_strip(bpy.types.Operator):
    bl_idname = "mimo.add_result_strip"
    bl_label = "Add Strip"
    bl_description = "Add the frames of the last result (its output folder) to the sequencer again"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        from . import timers

        return bool(context.scene.mimo.job_dir) and timers.active(context.scene) is None

    def execute(self, context):
        from ..core.frames import FRAME_NAME
        from . import timers, vse

        scene = context.scene
        folder = bpy.path.abspath(scene.mimo.job_dir)
        files = []
        while os.path.isfile(os.path.join(folder, FRAME_NAME.format(len(files)))):
            files.append(FRAME_NAME.format(len(files)))
        if not files:
            return _fail(self, AddonError(f"no frames in {folder}"))
        last = timers.last(scene)
        ours = last is not None and os.path.normpath(last.job_dir) == os.path.normpath(folder)
        start, hold = (last.start_frame, last.hold) if ours else (scene.frame_start, scene.frame_step)
        try:
            strip = vse.add_image_strip(scene, folder, files, start, name=os.path.basename(folder.rstrip("/\\")),
                                        hold=hold)
        except (RuntimeError, ValueError) as exc:
            return _fail(self, exc)
        self.report({"INFO"}, f"added {len(files)} frames as strip '{strip.name}' in channel {strip.channel}")
        return {"FINISHED"}


class MIMO_OT_show_preview(bpy.types.Operator):
    bl_idname = "mimo.show_preview"
    bl_label = "Show Preview"
    bl_description = ("Show the live preview large, in an Image Editor (an open one, else a new window); "
                      "it refreshes as frames arrive")

    @classmethod
    def poll(cls, context):
        s = context.scene.mimo
        return bool(s.preview_image) and s.preview_image in bpy.data.images

    def execute(self, context):
        img = bpy.data.images[context.scene.mimo.preview_image]
        for win in context.window_manager.windows:
            for area in win.screen.areas:
                if area.type == "IMAGE_EDITOR":
                    area.spaces.active.image = img
                    return {"FINISHED"}
        try:
            bpy.ops.wm.window_new()
        except RuntimeError:
            return _fail(self, AddonError(f"no window could be opened: open an Image Editor and pick "
                                               f"'{img.name}'"))
        area = context.window_manager.windows[-1].screen.areas[0]
        area.type = "IMAGE_EDITOR"
        area.spaces.active.image = img
        return {"FINISHED"}


class MIMO_OT_export_passes(bpy.types.Operator):
    bl_idname = "mimo.export_passes"
    bl_label = "Export Passes"
    bl_description = ("Write the shot's ground truth for other pose-driven video models into a new folder: "
                      "body parameters with OpenCV cameras (shot.npz), the body mask and OpenPose "
                      "keypoints per frame")

    def execute(self, context):
        from .export import export_passes

        scene = context.scene
        warnings: list[str] = []
        try:
            root, where = prefs.output_root()
            folder = new_job_dir(root, f"{scene.mimo.job_name}_passes")
        except (ValueError, OSError) as exc:
            return _fail(self, exc)
        try:
            out = export_passes(scene, folder, warnings)
        except (AddonError, ValueError, OSError) as exc:
            try:
                os.rmdir(folder)  # nothing was written (the shot was refused before)
            except OSError:
                pass
            return _fail(self, exc)
        for w in warnings + ([where] if where else []):
            self.report({"WARNING"}, w)
        scene.mimo.passes_dir = folder
        self.report({"INFO"}, f"wrote {out['frames']} frames of {out['bodies']} bodies "
                              f"({out['width']}x{out['height']}) to {folder}")
        return {"FINISHED"}


classes = (MIMO_OT_add_body, MIMO_OT_add_body_file, MIMO_OT_add_camera, MIMO_OT_pick_camera, MIMO_OT_import_motion,
           MIMO_OT_retarget, MIMO_OT_check_server, MIMO_OT_generate, MIMO_OT_cancel, MIMO_OT_add_result_strip,
           MIMO_OT_show_preview, MIMO_OT_export_passes)
