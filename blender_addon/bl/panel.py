"""View3D > Sidebar > MIMO: Generate on top (what will be sent, progress, result), then the
collapsible sub-panels Body, Camera, Shot and Server."""
from __future__ import annotations

import textwrap

import bpy

from . import prefs, rig_builder

WRAP = 44  # characters per line of wrapped text where the region's width is unknown


def wrap_chars(region_width: int, ui_scale: float) -> int:
    """Characters per line of wrapped text in a sidebar ``region_width`` pixels wide: the label
    font averages up to 7 px a character at UI scale 1; margins and the icon take ~52 px."""
    return max(16, int((region_width - 52 * ui_scale) / (7.0 * ui_scale)))


def _line_chars() -> int:
    region = getattr(bpy.context, "region", None)
    if region is None or region.type != "UI" or region.width < 64:  # (not drawn in a sidebar)
        return WRAP
    return wrap_chars(region.width, bpy.context.preferences.system.ui_scale)


def wrapped(layout, text: str, icon: str = "NONE") -> None:
    """``text`` over as many labels as the sidebar's width needs; the icon on the first line only."""
    for k, line in enumerate(textwrap.wrap(text, _line_chars()) or [""]):
        layout.label(text=line, icon=icon if k == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


class _Sub:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MIMO"
    bl_parent_id = "MIMO_PT_main"


class MIMO_PT_main(bpy.types.Panel):
    bl_label = "MIMO"
    bl_idname = "MIMO_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MIMO"

    def draw(self, context):
        _draw_job(self.layout, context.scene)


class MIMO_PT_body(_Sub, bpy.types.Panel):
    bl_label = "Body"
    bl_idname = "MIMO_PT_body"

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        row = layout.row(align=True)
        row.operator("mimo.add_body", icon="ADD")
        row.operator("mimo.add_body_file", text="", icon="FILE_FOLDER")
        if rig_builder.is_rig(obj):
            data = rig_builder.rig_data(obj["mimo_rig_data"])
            col = layout.column(align=True)
            for k, name in enumerate(data.shape_names[:len(obj.mimo_shape)]):
                col.prop(obj, "mimo_shape", index=k, text=name.replace("_", " ").title(), slider=True)
            layout.prop(obj, "mimo_character")
            row = layout.row(align=True)
            row.operator("mimo.import_motion", icon="IMPORT")
            row.operator("mimo.import_camera", icon="VIEW_CAMERA")
            row.operator("mimo.retarget", icon="ARMATURE_DATA")


class MIMO_PT_camera(_Sub, bpy.types.Panel):
    bl_label = "Camera"
    bl_idname = "MIMO_PT_camera"

    def draw(self, context):
        layout = self.layout
        s = context.scene.mimo
        layout.prop(s, "camera")
        row = layout.row(align=True)
        row.operator("mimo.add_camera", icon="ADD")
        row.operator("mimo.pick_camera", icon="EYEDROPPER")
        row.operator("mimo.import_camera", text="", icon="IMPORT")
        row = layout.row(align=True)
        row.prop(s, "width")
        row.prop(s, "height")
        wrapped(layout, _output_line(context.scene), icon="IMAGE_DATA")


class MIMO_PT_shot(_Sub, bpy.types.Panel):
    bl_label = "Shot"
    bl_idname = "MIMO_PT_shot"

    def draw(self, context):
        layout = self.layout
        s = context.scene.mimo
        layout.prop(s, "character")
        img = bpy.data.images.get(s.character_image) if s.character_image else None
        if img is not None:
            img.preview_ensure()
            layout.template_icon(icon_value=img.preview.icon_id, scale=4.0)
        layout.prop(s, "backend", placeholder=prefs.backend_of(s))  # empty: the preferences' default
        if prefs.backend_of(s) == "mimo":
            layout.prop(s, "mode")
            row = layout.row(align=True)
            row.prop(s, "steps")
            row.prop(s, "cfg")
            row = layout.row(align=True)
            row.prop(s, "roi_auto", text="Auto ROI")
            sub = row.row(align=True)
            sub.enabled = not s.roi_auto
            sub.prop(s, "roi_size", text="")
        layout.prop(s, "seed")
        layout.prop(s, "job_name")
        layout.prop(s, "scene_plate")
        layout.prop(s, "occlusion")
        if s.scene_plate or s.occlusion:
            layout.prop(s, "plate_engine")


class MIMO_PT_server(_Sub, bpy.types.Panel):
    bl_label = "Server"
    bl_idname = "MIMO_PT_server"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.mimo
        layout.prop(s, "server", placeholder=prefs.server_of(s))  # empty: the preferences' server
        row = layout.row(align=True)
        row.prop(s, "connect_timeout")
        row.operator("mimo.check_server", text="", icon="FILE_REFRESH")
        if s.capabilities:
            wrapped(layout, s.capabilities, icon="INFO")


def _draw_job(layout, scene) -> None:
    from . import timers
    from .operators import shot_summary

    s = scene.mimo
    col = layout.column()
    job = timers.active(scene)
    if job is not None:  # job state from the Python side: Ctrl+Z cannot hide Cancel
        col.operator("mimo.cancel", icon="CANCEL")
        col.progress(factor=job.progress, type="BAR", text=job.status)
    else:
        wrapped(col, shot_summary(scene), icon="RENDER_ANIMATION")
        row = col.row(align=True)
        row.operator("mimo.generate", icon="PLAY")
        row.operator("mimo.export_passes", text="", icon="EXPORT")
        job = timers.last(scene)
        wrapped(col, job.status if job is not None else s.status)
    img = bpy.data.images.get(s.preview_image) if s.preview_image else None
    if img is not None:
        img.preview_ensure()
        col.template_icon(icon_value=img.preview.icon_id, scale=8.0)
        col.operator("mimo.show_preview", icon="IMAGE")
    if job is not None and job.warning:
        wrapped(col, job.warning, icon="INFO")
    error = job.error if job is not None else s.last_error
    if error:
        wrapped(col, error, icon="ERROR")
    if timers.active(scene) is None and s.job_dir:
        row = col.row(align=True)
        row.operator("wm.path_open", text="Open Folder", icon="FILE_FOLDER").filepath = s.job_dir
        row.operator("mimo.add_result_strip", icon="SEQUENCE")


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


classes = (MIMO_PT_main, MIMO_PT_body, MIMO_PT_camera, MIMO_PT_shot, MIMO_PT_server)
