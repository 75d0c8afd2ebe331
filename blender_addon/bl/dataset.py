"""Make Training Dataset, the Blender half: render every (motion, camera) clip of a scene with one
MIMO body rig and the character skinned to it (any mesh child of the rig), in the clip layout of
``core/dataset.py``.

Per clip, on the main thread (Blender renders only there):

* the motion: a motion file keyframed onto the rig as Import Motion does (resampled to the scene
  fps, its floor on the rig's floor), or the scene's own animation;
* the camera: a scene camera, or one of a ring of cameras generated around what the body sweeps
  in that clip (removed afterwards);
* frames: the scene rendered as it is, character included (Workbench, or Cycles on the CPU with
  few samples; Eevee is not offered: in the headless ``bpy`` wheel it compiles its shaders in
  software, minutes for the first frame);
* scene plate and occlusion mask: ``layers.render_layers``, exactly what Generate sends;
* motion.npz: the bodies read back from the rig (``rig_builder.read_pose``, the evaluated pose)
  and the camera track (``bl/camera.py``) — what Generate would send;
* codes: the library's rasterizer on motion.npz (``core/dataset_codes.py``);
* character_0.png (once per run, copied into every clip): the character in the armature's Rest
  Position, seen from the front, alone on white.

Every scene setting touched (camera, render size, engine, the rig's action and pose) is restored
afterwards, also after a cancel or an error. Shapes: see ``core/dataset.py``.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import bpy
import numpy as np

from ..core import dataset as ds
from ..core.errors import AddonError
from ..core.png import write_png
from . import rig_builder

ENGINES = ("WORKBENCH", "CYCLES")
CAMERAS = ("SHOT", "SCENE", "RING")
LOW_OVERLAP = 0.5  # core.dataset.character_overlap below this: warn that the character may not follow the rig
LICENCE = ("rendered in Blender by the MIMO add-on; the licence is that of the scene, character and "
           "motion files used")


@dataclasses.dataclass
class DatasetOptions:
    """What to write. ``motions``: motion files (empty: the scene's animation); ``cameras``:
    SHOT (the shot's camera), SCENE (every perspective camera of the scene) or RING
    (``ring_count`` cameras around the body); ``frames``: at most this many frames per clip
    (0: all); ``width`` x ``height``: the clip size (multiples of 8); ``python``: the Library
    Python for the codes (empty: this Python, when it has the library); ``reference``: write
    ``character_0.png``, the character in its rest pose seen from the front, on white."""

    out_dir: str
    motions: list[str] = dataclasses.field(default_factory=list)
    cameras: str = "RING"
    ring_count: int = 4
    ring_elevation: float = 5.0
    frames: int = 0
    width: int = 256
    height: int = 256
    engine: str = "WORKBENCH"
    samples: int = 16
    occlusion: bool = True
    reference: bool = True
    overwrite: bool = False
    python: str = ""


def _u8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


class DatasetWriter:
    """Checks everything before the first render (raises :class:`AddonError`), then
    :meth:`steps` renders and writes, yielding ``(fraction done, status line)`` between frames."""

    def __init__(self, scene: bpy.types.Scene, options: DatasetOptions):
        from .operators import scene_rigs

        self.scene, self.o = scene, options
        try:
            ds.check_size(options.width, options.height)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        if options.engine not in ENGINES:
            raise AddonError(f"engine: expected one of {ENGINES}, got {options.engine!r}")
        if options.cameras not in CAMERAS:
            raise AddonError(f"cameras: expected one of {CAMERAS}, got {options.cameras!r}")
        if options.frames < 0:
            raise AddonError(f"frames: expected 0 (all) or more, got {options.frames}")
        rigs = scene_rigs(scene)
        if len(rigs) != 1:
            raise AddonError(f"a training dataset needs exactly one MIMO body in the scene (its character "
                                  f"skinned to it), found {len(rigs)}")
        self.rig = rigs[0]
        if not [o for o in self.rig.children_recursive if o.type == "MESH" and not o.hide_render]:
            raise AddonError(f"{self.rig.name}: no rendered mesh is parented to the rig (the character)")
        for m in options.motions:
            if not os.path.isfile(m):
                raise AddonError(f"motions: {m} does not exist")
        if not options.out_dir:
            raise AddonError("output folder: choose where the dataset goes")
        if os.path.exists(options.out_dir) and not os.path.isdir(options.out_dir):
            raise AddonError(f"output folder: {options.out_dir} exists and is not a folder")
        self.cameras = self._cameras()
        names = [c.name for c in self.cameras] if self.cameras else \
            [f"ring{k:02d}" for k in range(options.ring_count)]
        try:
            self.plans = ds.plan_clips(list(options.motions), names)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        if os.path.isdir(options.out_dir) and not options.overwrite:
            clash = ds.existing_clips(options.out_dir, self.plans)
            if clash:
                more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
                raise AddonError(f"{os.path.join(options.out_dir, clash[0])}{more} already exist: tick "
                                      "Overwrite to replace them, or choose another folder")
        if options.python and not os.path.isfile(options.python):
            raise AddonError(f"Library Python: {options.python} is not a file")
        if not options.python:
            from ..core.dataset_codes import library_available

            if not library_available():
                raise AddonError("Library Python: Blender's Python has no mimo library to render the motion "
                                      "codes; set it to a Python where mimo-blender is installed "
                                      "(e.g. <repository>/.venv/bin/python)")
        self.cancelled = False
        self.overlap = 1.0
        self.written: list[str] = []
        self.warnings: list[str] = []

    def _cameras(self) -> list:
        """The scene cameras of SHOT / SCENE (RING: none here, they are made per clip)."""
        scene, mode = self.scene, self.o.cameras
        if mode == "RING":
            if self.o.ring_count < 1:
                raise AddonError(f"ring cameras: expected at least 1, got {self.o.ring_count}")
            return []
        if mode == "SHOT":
            cams = [scene.mimo.camera or scene.camera]
            if cams[0] is None:
                raise AddonError("no camera: pick one in the Camera panel, set the scene camera, or use "
                                      "a ring of cameras")
        else:
            cams = sorted((o for o in scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
            if not cams:
                raise AddonError("the scene has no camera: add one, or use a ring of cameras")
        for c in cams:
            if c.type != "CAMERA" or c.data.type != "PERSP":
                raise AddonError(f"{c.name}: a dataset camera must be a perspective camera")
        return cams

    # ------------------------------------------------------------------------------- the run
    def steps(self):
        """Render and write every clip; yields ``(fraction, status)``. Cancel with
        :meth:`cancel` between two steps; finished clips stay, the unfinished one is removed."""
        o, scene, rig = self.o, self.scene, self.rig
        os.makedirs(o.out_dir, exist_ok=True)
        r = scene.render
        keep = {"camera": scene.camera, "frame": scene.frame_current,
                "size": (r.resolution_x, r.resolution_y, r.resolution_percentage, r.pixel_aspect_x,
                         r.pixel_aspect_y)}
        ad = rig.animation_data
        keep_action = ad.action if ad is not None else None
        keep_pose = [(pb, pb.rotation_mode, pb.matrix_basis.copy()) for pb in rig.pose.bones]
        temp_actions, temp_cams = [], []
        current = None
        start = time.monotonic()
        try:
            r.resolution_x, r.resolution_y, r.resolution_percentage = o.width, o.height, 100
            r.pixel_aspect_x = r.pixel_aspect_y = 1.0
            reference = None
            if o.reference:
                yield 0.0, "reference image"
                reference = self._reference()
            loaded = {}
            for n, plan in enumerate(self.plans):
                if self.cancelled:
                    raise _Cancelled
                current = plan.name
                if plan.motion not in loaded:
                    loaded = {plan.motion: self._apply_motion(plan.motion, temp_actions, keep_action)}
                frames, fps = loaded[plan.motion]
                if self.cameras:
                    cam = self.cameras[plan.camera]
                else:
                    if plan.camera == 0:  # a new motion: a new ring around what it sweeps
                        _remove_cameras(temp_cams)
                        temp_cams = self._ring(frames)
                    cam = temp_cams[plan.camera]
                scene.camera = cam
                tmp = ds.start_clip(o.out_dir, plan.name)
                done = n / len(self.plans)
                clip_steps = self._clip(tmp, frames, fps, cam)
                try:
                    for step, text in clip_steps:
                        if self.cancelled:
                            raise _Cancelled
                        yield done + step / len(self.plans), (f"{plan.name}: {text} ({n + 1}/{len(self.plans)} "
                                                              f"clips, {time.monotonic() - start:.0f} s)")
                finally:
                    clip_steps.close()
                meta = {"fps": fps, "source": f"Blender {bpy.app.version_string}, MIMO add-on Make Training "
                                              f"Dataset: motion {os.path.basename(plan.motion) or 'scene'}, "
                                              f"camera {cam.name}, engine {o.engine}",
                        "licence": LICENCE, "body_model": rig_builder.rig_data(rig["mimo_rig_data"]).kind,
                        "blender": {"motion": plan.motion, "camera": cam.name, "engine": o.engine,
                                    "frames": [int(f) for f in frames], "overlap": round(self.overlap, 4)}}
                if self.overlap < LOW_OVERLAP:
                    self.warnings.append(f"{plan.name}: the rendered character overlaps the body of the codes by "
                                         f"{self.overlap:.0%} only (IoU): does the character follow the MIMO rig?")
                if reference is not None:
                    write_png(os.path.join(ds.partial_dir(o.out_dir, plan.name), "character_0.png"), reference)
                try:
                    self.written.append(ds.finish_clip(o.out_dir, plan.name, meta, o.overwrite,
                                                       ["character_0.png"] if reference is not None else []))
                except ValueError as exc:
                    raise AddonError(str(exc)) from None
                current = None
                yield (n + 1) / len(self.plans), f"wrote {plan.name} ({n + 1}/{len(self.plans)} clips)"
        except _Cancelled:
            pass
        finally:
            if current is not None:
                ds.drop_partial(o.out_dir, current)
            _remove_cameras(temp_cams)
            if rig.animation_data is not None:
                rig.animation_data.action = keep_action
            for a in temp_actions:
                bpy.data.actions.remove(a)
            for pb, mode, basis in keep_pose:
                pb.rotation_mode = mode
                pb.matrix_basis = basis
            scene.camera = keep["camera"]
            (r.resolution_x, r.resolution_y, r.resolution_percentage, r.pixel_aspect_x,
             r.pixel_aspect_y) = keep["size"]
            scene.frame_set(keep["frame"])

    def cancel(self) -> None:
        self.cancelled = True

    # ------------------------------------------------------------------------------ pieces
    def _apply_motion(self, motion: str, temp_actions: list, keep_action) -> tuple[list[int], float]:
        """Keyframe ``motion`` onto the rig in a new action (or bring back the scene's own
        animation); returns the scene frames of the clip and its fps."""
        from .operators import clip_frames, frame_range, motion_on_rig

        scene, rig = self.scene, self.rig
        fr = frame_range(scene)
        limit = self.o.frames or None
        if not motion:
            if rig.animation_data is not None:
                rig.animation_data.action = keep_action
            return fr.scene_frames[:limit], fr.fps
        fps = scene.render.fps / scene.render.fps_base
        try:
            _, aa, transl = motion_on_rig(rig, motion, fps)
        except (ValueError, OSError) as exc:
            raise AddonError(f"{os.path.basename(motion)}: {exc}") from None
        aa, transl = aa[:limit], transl[:limit]
        rig.animation_data_create()
        rig.animation_data.action = None  # keyframes go to a new action; the rig's own is kept
        frames = clip_frames(scene, len(aa))
        rig_builder.keyframe_pose(rig, aa, transl, frames)
        temp_actions.append(rig.animation_data.action)
        return frames, fps

    def _character_points(self, frames: list[int] | None) -> np.ndarray:
        """World points (Blender axes) of the character's meshes at up to 9 of ``frames`` (None:
        as they are now). Shapes: -> (N, 3)"""
        meshes = [o for o in self.rig.children_recursive if o.type == "MESH" and not o.hide_render]
        pts = []
        for f in ([None] if frames is None else frames[:: max(1, len(frames) // 8)] + frames[-1:]):
            if f is not None:
                self.scene.frame_set(f)
            dg = bpy.context.evaluated_depsgraph_get()
            for ob in meshes:
                ev = ob.evaluated_get(dg)
                me = ev.to_mesh()
                co = np.empty(len(me.vertices) * 3, np.float32)
                me.vertices.foreach_get("co", co)
                ev.to_mesh_clear()
                M = np.array([list(row) for row in ob.matrix_world])
                pts.append(co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3])
        return np.concatenate(pts)

    def _ring(self, frames: list[int] | None, count: int | None = None, elevation: float | None = None,
              margin: float = 0.1) -> list:
        """The ring cameras (linked to the scene) around what the character's meshes sweep over
        ``frames`` (None: their current shape)."""
        from mathutils import Matrix, Vector

        from ..core import camera as cam_math

        scene = self.scene
        pts = self._character_points(frames)
        data = bpy.data.cameras.new("MIMO Dataset Camera")
        shot = self.scene.mimo.camera or self.scene.camera
        if shot is not None and shot.type == "CAMERA" and shot.data.type == "PERSP":
            data.lens, data.sensor_width, data.sensor_height = shot.data.lens, shot.data.sensor_width, \
                shot.data.sensor_height
            data.sensor_fit = shot.data.sensor_fit
        from .camera import lens_of

        probe = bpy.data.objects.new("MIMO Dataset Camera", data)
        K = cam_math.intrinsics(lens_of(probe, scene))
        bpy.data.objects.remove(probe)
        tan_x, tan_y = self.o.width / 2 / K[0, 0], self.o.height / 2 / K[1, 1]
        fwd = np.array(self.rig.matrix_world.to_3x3() @ Vector((0.0, -1.0, 0.0)))  # where the rig faces
        front = float(np.degrees(np.arctan2(fwd[0], -fwd[1])))
        mats = ds.ring_cameras(pts, self.o.ring_count if count is None else count, tan_x, tan_y, margin=margin,
                               elevation_deg=self.o.ring_elevation if elevation is None else elevation,
                               front_deg=front)
        out = []
        for k, M in enumerate(mats):
            ob = bpy.data.objects.new(f"ring{k:02d}", data)
            scene.collection.objects.link(ob)
            ob.matrix_world = Matrix(M.tolist())
            out.append(ob)
        return out

    def _reference(self) -> np.ndarray:
        """The character in its rest pose (the armature's Rest Position), seen from the front at
        the clip size, alone on white. Shapes: -> (H, W, 3) uint8"""
        from .layers import _saved, body_objects, render_rgba

        scene, r = self.scene, self.scene.render
        bodies = {ob.name for ob in body_objects([self.rig])}
        others = [ob for ob in scene.objects if ob.name not in bodies]
        fmt = r.image_settings
        settings = [(fmt, "media_type", "IMAGE")] if hasattr(fmt, "media_type") else []
        settings += [(fmt, "file_format", "PNG"), (fmt, "color_mode", "RGBA"), (fmt, "color_depth", "8"),
                     (r, "use_file_extension", True), (r, "use_sequencer", False), (r, "use_compositing", False),
                     (r, "filepath", r.filepath), (r, "film_transparent", True), *self._engine_settings(),
                     (self.rig.data, "pose_position", "REST"), *[(ob, "hide_render", True) for ob in others]]
        tmp = tempfile.mkdtemp(prefix="mimo-dataset-")
        cams = []
        try:
            with _saved(*settings):
                cams = self._ring(None, count=1, elevation=0.0, margin=0.05)
                scene.camera = cams[0]
                rgba = render_rgba(scene, os.path.join(tmp, "reference.png"))
        finally:
            _remove_cameras(cams)
            os.rmdir(tmp) if not os.listdir(tmp) else None
        alpha = rgba[..., 3:]
        return _u8(rgba[..., :3] * alpha + (1.0 - alpha))  # straight alpha over white

    def _engine_settings(self) -> list:
        o, scene = self.o, self.scene
        out = [(scene.render, "engine", "BLENDER_WORKBENCH" if o.engine == "WORKBENCH" else "CYCLES")]
        if o.engine == "CYCLES":
            out += [(scene.cycles, "samples", o.samples), (scene.cycles, "device", "CPU")]
        return out

    def _clip(self, folder: str, frames: list[int], fps: float, cam):
        """Render one clip into ``folder``; yields (fraction of the clip, status)."""
        from ..core import dataset_codes
        from .camera import camera_track
        from .layers import _render, _saved, render_layers

        o, scene, r = self.o, self.scene, self.scene.render
        F = len(frames)
        p = rig_builder.read_pose(self.rig, scene, frames)
        if p["issue"]:
            self.warnings.append(p["issue"])
        body = {k: p[k] for k in ("global_orient", "body_pose", "transl", "betas", "left_hand_pose",
                                  "right_hand_pose") if k in p}
        track = camera_track(scene, cam, frames)
        if (track["width"], track["height"]) != (o.width, o.height):
            raise AddonError(f"{cam.name}: the camera track is {track['width']}x{track['height']}, "
                                  f"not {o.width}x{o.height}")
        kind = rig_builder.rig_data(self.rig["mimo_rig_data"]).kind
        with open(os.path.join(folder, "motion.npz"), "wb") as f:
            f.write(ds.motion_npz([body], track, fps, kind))
        fmt = r.image_settings
        settings = [(fmt, "media_type", "IMAGE")] if hasattr(fmt, "media_type") else []
        settings += [(fmt, "file_format", "PNG"), (fmt, "color_mode", "RGBA"), (fmt, "color_depth", "8"),
                     (r, "use_file_extension", True), (r, "use_sequencer", False), (r, "use_compositing", False),
                     (r, "filepath", r.filepath), *self._engine_settings()]
        W, H = o.width, o.height
        gt = np.zeros((F, H, W, 3), np.uint8)
        plate = np.zeros((F, H, W, 3), np.uint8)
        occ = np.zeros((F, H, W), np.uint8)
        tmp = tempfile.mkdtemp(prefix="mimo-dataset-")
        try:
            with _saved(*settings):
                for i, frame in enumerate(frames):
                    scene.frame_set(frame)
                    gt[i] = _u8(_render(scene, os.path.join(tmp, "frame.png")))
                    pl, oc = render_layers(scene, [self.rig], [frame], W, H, crop=True, plate=True,
                                           occlusion=o.occlusion, engine=o.engine)
                    plate[i] = pl[0]
                    if oc is not None:
                        occ[i] = oc[0]
                    yield 0.9 * (i + 1) / F, f"frame {i + 1}/{F}"
        finally:
            os.rmdir(tmp) if not os.listdir(tmp) else None
        ds.save_array(folder, "frames", gt, 4)
        ds.save_array(folder, "scene", plate, 4)
        if o.occlusion:
            ds.save_array(folder, "occlusion", occ, 3)
        yield 0.9, "motion codes"
        try:
            dataset_codes.write_codes(os.path.join(folder, "motion.npz"), os.path.join(folder, "codes.npy"),
                                      python=o.python)
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        codes = np.load(os.path.join(folder, "codes.npy"), mmap_mode="r")
        self.overlap = ds.character_overlap(gt, plate, np.asarray(codes), occ if o.occlusion else None)
        yield 1.0, "codes done"


def _remove_cameras(cams: list) -> None:
    """Remove camera objects made here, and their camera data once nothing uses it."""
    datas = {c.data for c in cams}
    for c in cams:
        bpy.data.objects.remove(c)
    for d in datas:
        if d.users == 0:
            bpy.data.cameras.remove(d)
    cams.clear()


class _Cancelled(Exception):
    pass
