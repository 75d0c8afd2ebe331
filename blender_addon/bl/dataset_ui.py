"""Make Training Dataset: the operator (a dialog with its options, then progress and Esc/Cancel
while it renders) and the MIMO > Training Data sub-panel with its button. The work is
``bl/dataset.py``; this file only turns options into a :class:`DatasetOptions`, runs the writer
one frame per timer tick (synchronously when Blender has no UI, as in scripts), and reports.
"""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..core.errors import AddonError
from .panel import _Sub, wrapped

#: the running writer and what the panel shows (Python state: undo cannot hide a running job)
STATE: dict = {"writer": None, "fraction": 0.0, "status": "", "error": "", "folder": ""}


def _fail(op, exc: Exception) -> set[str]:
    STATE["error"] = str(exc)
    op.report({"ERROR"}, str(exc))
    return {"CANCELLED"}


class MIMO_OT_make_dataset(bpy.types.Operator):
    bl_idname = "mimo.make_dataset"
    bl_label = "Make Training Dataset"
    bl_description = ("Render a MIMO training dataset from this scene: for every motion and camera, the "
                      "character (frames), the scene without it (plate), what hides it (occlusion) and the "
                      "motion codes, one clip folder each (mimo dataset check reads it)")

    directory: StringProperty(name="Output folder", subtype="DIR_PATH", default="",
                              description="Dataset folder: one clip folder per motion and camera")
    motions: StringProperty(name="Motions", default="",
                            description="A folder of motion files, or motion files separated by ';' (mimo clip, "
                                        "AMASS, SMPL .npz/.pkl, BVH). Empty: the scene's own animation")
    cameras: EnumProperty(name="Cameras", default="RING", items=[
        ("RING", "Ring", "Cameras generated around the body for each motion (the first in front)"),
        ("SHOT", "Shot camera", "The shot's camera (Camera panel, else the scene camera)"),
        ("SCENE", "All scene cameras", "Every perspective camera in the scene")])
    ring_count: IntProperty(name="Ring cameras", default=4, min=1, max=64)
    ring_elevation: FloatProperty(name="Elevation", default=5.0, min=-60.0, max=80.0,
                                  description="Height of the ring cameras above the body's centre (degrees)")
    frames: IntProperty(name="Frames", default=32, min=0, max=100000,
                        description="At most this many frames per clip (0: the whole motion or scene range)")
    width: IntProperty(name="Width", default=256, min=16, max=2048, step=8, description="A multiple of 8")
    height: IntProperty(name="Height", default=256, min=16, max=2048, step=8, description="A multiple of 8")
    engine: EnumProperty(name="Renderer", default="WORKBENCH", items=[
        ("WORKBENCH", "Workbench", "Fast, the viewport's solid shading"),
        ("CYCLES", "Cycles (CPU)", "Path traced on the CPU with the samples below")])
    samples: IntProperty(name="Samples", default=16, min=1, max=4096)
    occlusion: BoolProperty(name="Occlusion mask", default=True,
                            description="Render where scene objects hide the character")
    reference: BoolProperty(name="Reference image", default=True,
                            description="Write character_0.png: the character in its rest pose, from the "
                                        "front, on white")
    overwrite: BoolProperty(name="Overwrite", default=False,
                            description="Replace clip folders of the same names in the output folder")
    python: StringProperty(name="Library Python", subtype="FILE_PATH", default="",
                           description="A Python where mimo-blender is installed, which renders the motion "
                                       "codes (empty: Blender's own, if it has the mimo library)")

    @classmethod
    def poll(cls, context):
        return STATE["writer"] is None

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=460)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "directory")
        layout.prop(self, "motions")
        layout.prop(self, "cameras")
        if self.cameras == "RING":
            row = layout.row(align=True)
            row.prop(self, "ring_count")
            row.prop(self, "ring_elevation")
        layout.prop(self, "frames")
        row = layout.row(align=True)
        row.prop(self, "width")
        row.prop(self, "height")
        layout.prop(self, "engine")
        if self.engine == "CYCLES":
            layout.prop(self, "samples")
        row = layout.row(align=True)
        row.prop(self, "occlusion")
        row.prop(self, "reference")
        layout.prop(self, "python")
        layout.prop(self, "overwrite")

    def dataset_options(self):
        from ..core.dataset import motion_files
        from .dataset import DatasetOptions

        try:
            motions = motion_files(";".join(bpy.path.abspath(p.strip()) for p in self.motions.split(";")
                                            if p.strip()))
        except ValueError as exc:
            raise AddonError(str(exc)) from None
        return DatasetOptions(out_dir=bpy.path.abspath(self.directory), motions=motions, cameras=self.cameras,
                              ring_count=self.ring_count, ring_elevation=self.ring_elevation, frames=self.frames,
                              width=self.width, height=self.height, engine=self.engine, samples=self.samples,
                              occlusion=self.occlusion, reference=self.reference,
                              overwrite=self.overwrite,
                              python=bpy.path.abspath(self.python) if self.python else "")

    def execute(self, context):
        from .dataset import DatasetWriter

        STATE.update(error="", status="", fraction=0.0)
        try:
            writer = DatasetWriter(context.scene, self.dataset_options())
        except AddonError as exc:
            return _fail(self, exc)
        STATE.update(writer=writer, folder=writer.o.out_dir, status="starting")
        self._steps = writer.steps()
        if bpy.app.background or context.window is None:  # scripts: no event loop to tick it
            try:
                for fraction, status in self._steps:
                    STATE.update(fraction=fraction, status=status)
            except Exception as exc:
                return self._end(context, exc)
            return self._end(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.01, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 1000)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        writer = STATE["writer"]
        if event.type == "ESC":
            writer.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        if writer.cancelled:
            self._steps.close()  # runs the writer's clean-up: the unfinished clip is removed
            return self._end(context)
        try:  # one frame per tick: the UI stays responsive between frames
            fraction, status = next(self._steps)
        except StopIteration:
            return self._end(context)
        except Exception as exc:
            return self._end(context, exc)
        STATE.update(fraction=fraction, status=status)
        context.window_manager.progress_update(int(1000 * fraction))
        for area in context.screen.areas if context.screen else []:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        return {"RUNNING_MODAL"}

    def cancel(self, context):
        """Blender drops the modal handler (another file opened, the window closed): stop, remove
        the unfinished clip, restore what can still be restored."""
        writer = STATE["writer"]
        if writer is not None:
            writer.cancel()
            try:
                self._steps.close()
            except ReferenceError:  # the scene is already gone with the old file
                pass
            STATE.update(writer=None, status=f"cancelled: kept {len(writer.written)} of {len(writer.plans)} clips")
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def _end(self, context, exc: Exception | None = None) -> set[str]:
        writer = STATE["writer"]
        STATE["writer"] = None
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
            context.window_manager.progress_end()
        for w in writer.warnings:
            self.report({"WARNING"}, w)
        n = len(writer.written)
        if exc is not None:
            STATE["status"] = f"failed after {n} clips"
            return _fail(self, exc)
        what = "cancelled: kept" if writer.cancelled else "wrote"
        STATE.update(status=f"{what} {n} of {len(writer.plans)} clips in {writer.o.out_dir}",
                     fraction=1.0 if not writer.cancelled else STATE["fraction"])
        self.report({"WARNING" if writer.cancelled else "INFO"}, STATE["status"])
        return {"CANCELLED"} if writer.cancelled else {"FINISHED"}


class MIMO_OT_cancel_dataset(bpy.types.Operator):
    bl_idname = "mimo.cancel_dataset"
    bl_label = "Cancel Dataset"
    bl_description = "Stop making the training dataset (finished clips are kept)"

    @classmethod
    def poll(cls, context):
        return STATE["writer"] is not None

    def execute(self, context):
        STATE["writer"].cancel()
        return {"FINISHED"}


class MIMO_PT_dataset(_Sub, bpy.types.Panel):
    bl_label = "Training Data"
    bl_idname = "MIMO_PT_dataset"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        col = self.layout.column()
        if STATE["writer"] is not None:
            col.operator("mimo.cancel_dataset", icon="CANCEL")
            col.progress(factor=STATE["fraction"], type="BAR", text=STATE["status"][:60])
            return
        col.operator("mimo.make_dataset", text="Make Training Dataset…", icon="RENDER_ANIMATION")
        if STATE["status"]:
            wrapped(col, STATE["status"])
        if STATE["error"]:
            wrapped(col, STATE["error"], icon="ERROR")
        if STATE["folder"]:
            col.operator("wm.path_open", text="Open Folder", icon="FILE_FOLDER").filepath = STATE["folder"]


classes = (MIMO_OT_make_dataset, MIMO_OT_cancel_dataset, MIMO_PT_dataset)
