"""View3D > Sidebar > MIMO."""
from __future__ import annotations

import bpy

from . import rig_builder


class MIMO_PT_main(bpy.types.Panel):
    bl_label = "MIMO"
    bl_idname = "MIMO_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MIMO"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        s = scene.mimo
        obj = context.active_object

        box = layout.box()
        box.label(text="Body", icon="ARMATURE_DATA")
        row = box.row(align=True)
        row.operator("mimo.add_body", icon="ADD")
        row.operator("mimo.add_body_file", text="", icon="FILE_FOLDER")
        if rig_builder.is_rig(obj):
            data = rig_builder.rig_data(obj["mimo_rig_data"])
            col = box.column(align=True)
            for k, name in enumerate(data.shape_names[:len(obj.mimo_shape)]):
                col.prop(obj, "mimo_shape", index=k, text=name.replace("_", " ").title(), slider=True)
            row = box.row(align=True)
            row.operator("mimo.import_motion", icon="IMPORT")
            row.operator("mimo.retarget", icon="ARMATURE_DATA")

        box = layout.box()
        box.label(text="Camera", icon="CAMERA_DATA")
        box.prop(s, "camera")
        row = box.row(align=True)
        row.operator("mimo.add_camera", icon="ADD")
        row.operator("mimo.pick_camera", icon="EYEDROPPER")
        row = box.row(align=True)
        row.prop(s, "width")
        row.prop(s, "height")
        box.label(text=_output_line(scene), icon="IMAGE_DATA")

        box = layout.box()
        box.label(text="Server", icon="NETWORK_DRIVE")
        box.prop(s, "server")
        row = box.row(align=True)
        row.prop(s, "connect_timeout")
        row.operator("mimo.check_server", text="", icon="FILE_REFRESH")
        if s.capabilities:
            box.label(text=s.capabilities)

        box = layout.box()
        box.label(text="Shot", icon="RENDER_ANIMATION")
        box.prop(s, "character")
        box.prop(s, "backend")
        if s.backend == "mimo":
            box.prop(s, "mode")
            row = box.row(align=True)
            row.prop(s, "steps")
            row.prop(s, "cfg")
        box.prop(s, "seed")
        box.prop(s, "job_name")
        row = box.row(align=True)
        row.prop(s, "scene_plate")
        row.prop(s, "occlusion")
        if s.scene_plate or s.occlusion:
            box.prop(s, "plate_engine")

        _draw_job(layout, scene)


def _draw_job(layout, scene) -> None:
    from . import timers

    s = scene.mimo
    col = layout.column()
    job = timers.active(scene)
    if job is not None:  # job state from the Python side: Ctrl+Z cannot hide Cancel
        col.operator("mimo.cancel", icon="CANCEL")
        col.progress(factor=job.progress, type="BAR", text=job.status)
    else:
        col.operator("mimo.generate", icon="PLAY")
        job = timers.last(scene)
        col.label(text=job.status if job is not None else s.status)
    img = bpy.data.images.get(s.preview_image) if s.preview_image else None
    if img is not None:
        img.preview_ensure()
        col.template_icon(icon_value=img.preview.icon_id, scale=8.0)
    if job is not None and job.warning:
        col.label(text=job.warning, icon="INFO")
    error = job.error if job is not None else s.last_error
    if error:
        col.label(text=error, icon="ERROR")


def _output_line(scene) -> str:
    """What of the render becomes the output (crop to the output's aspect, never a squeeze)."""
    from ..core.camera import describe_output

    r = scene.render
    p = r.resolution_percentage
    try:
        return describe_output(r.resolution_x * p // 100, r.resolution_y * p // 100,
                               scene.mimo.width, scene.mimo.height)
    except ValueError as exc:
        return str(exc)


classes = (MIMO_PT_main,)
