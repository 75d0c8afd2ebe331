"""Scene and object properties of the add-on, and their one conversion into core settings."""
from __future__ import annotations

import os

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

MAX_SHAPES = 16


def _is_camera(self, obj) -> bool:
    return obj.type == "CAMERA"


def _is_rig(self, obj) -> bool:
    return obj.type == "ARMATURE"


def _shape_changed(self, context) -> None:
    """Keep each shape value in the body's defined range (writing it back calls this again),
    then reshape the rig."""
    from . import rig_builder

    if not self.get("mimo_rig_data"):
        return
    rng = rig_builder.rig_data(self["mimo_rig_data"]).shape_range
    values = list(self.mimo_shape)
    limited = [min(max(v, float(rng[k][0])), float(rng[k][1])) if k < len(rng) else 0.0
               for k, v in enumerate(values)]
    if limited != values:
        self.mimo_shape = limited
        return
    rig_builder.apply_shape(self)


#: Offered before a server has answered; afterwards the panel offers what the server reports
#: (its Capabilities: backends and modes with their one-line summaries).
KNOWN_BACKENDS = {"preview": "motion codes composited on the scene (no weights)",
                  "mimo": "the MIMO diffusion pipeline (needs weights on the server)"}
KNOWN_MODES = {"exact": "the official pipeline's numerics", "fast": "same networks, faster schedule"}


def _reported(text: str) -> dict[str, str]:
    """``name<TAB>summary`` lines (what a server reported) -> {name: summary}, in order."""
    out = {}
    for line in text.splitlines():
        name, _, summary = line.partition("\t")
        if name:
            out[name] = summary
    return out


def reported_lines(items: dict[str, str]) -> str:
    return "\n".join(f"{k}\t{v}" for k, v in items.items())


def _backends(self, context, edit_text):
    """The backends the server reported (Check Server or a job), else the known ones."""
    return list(_reported(self.server_backends).items()) or list(KNOWN_BACKENDS.items())


def _modes(self, context, edit_text):
    """The modes the server reported (Check Server or a job), else the known ones."""
    return list(_reported(self.server_modes).items()) or list(KNOWN_MODES.items())


def offered(text: str) -> list[str]:
    """Names a server reported (empty: it has not answered yet)."""
    return list(_reported(text))


def _character_changed(self, context) -> None:
    """Load the character image for the panel's thumbnail (draw() may not load data)."""
    self.character_image = ""
    path = bpy.path.abspath(self.character) if self.character else ""
    if path and os.path.isfile(path):
        try:
            self.character_image = bpy.data.images.load(path, check_existing=True).name
        except RuntimeError:  # not an image Blender reads: Generate says what is wrong
            pass


def _server_changed(self, context) -> None:
    """Another server: what the last one offered no longer applies."""
    self.server_backends = self.server_modes = self.capabilities = ""
    self.server_max_side = 0


class MIMO_PG_settings(bpy.types.PropertyGroup):
    server: StringProperty(name="Server", default="", update=_server_changed,
                           description="ZeroMQ address of the mimo-server (empty: the add-on preferences' "
                                       "server, tcp://127.0.0.1:5555 unless changed there)")
    connect_timeout: FloatProperty(name="Wait for Server", default=5.0, min=0.5, max=120.0, unit="TIME_ABSOLUTE",
                                   description="How long the server may stay silent before it is reported "
                                               "as not answering (seconds)")
    backend: StringProperty(name="Backend", default="", search=_backends,
                            description="What the server renders with: the ones it offers are listed once "
                                        "it answered (preview: motion codes only, no weights; mimo: the "
                                        "diffusion pipeline). Empty: the add-on preferences' default")
    passes_dir: StringProperty(name="Passes", default="", subtype="DIR_PATH",
                               description="Folder of the last Export Passes")
    character_image: StringProperty(name="Character image", default="", options={"HIDDEN"},
                                    description="The loaded character image (the panel's thumbnail)")
    server_backends: StringProperty(name="Server backends", default="", options={"HIDDEN"},
                                    description="Backends the server last reported (name, tab, summary per line)")
    server_modes: StringProperty(name="Server modes", default="", options={"HIDDEN"},
                                 description="Modes the server last reported (name, tab, summary per line)")
    mode: StringProperty(name="Mode", default="exact", search=_modes,
                         description="Generation mode: the ones the server offers are listed once it "
                                     "answered (exact: the official pipeline; fast: same networks, faster "
                                     "schedule; a server may offer more)")
    character: StringProperty(name="Character", subtype="FILE_PATH", update=_character_changed,
                              description="Reference image of the character (PNG or JPEG); the Preview "
                                          "backend works without one")
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="Camera of the shot (empty: the scene camera)")
    width: IntProperty(name="Width", default=0, min=0, max=2048,
                       description="Output width in pixels, a multiple of 8 (0: from the render). The "
                                   "render is cropped to the output's aspect, never squeezed")
    height: IntProperty(name="Height", default=0, min=0, max=2048,
                        description="Output height in pixels, a multiple of 8 (0: from the render). The "
                                    "render is cropped to the output's aspect, never squeezed")
    steps: IntProperty(name="Steps", default=0, min=0, max=1000,
                       description="Denoising steps (0: the mode's default, which the server applies)")
    cfg: FloatProperty(name="CFG", default=3.5, min=0.0, max=50.0)
    roi_auto: BoolProperty(name="Automatic ROI Size", default=True,
                           description="Let the server choose the size MIMO generates the character's crop "
                                       "(ROI) at: 784, or the output's longer side when smaller")
    roi_size: IntProperty(name="ROI Size", default=784, min=64, max=8192, step=16, subtype="PIXEL",
                          description="Side of the square MIMO generates the character's crop (ROI) at, "
                                      "a multiple of 8 up to the server's largest side: larger keeps more "
                                      "detail of a character that fills the frame, smaller is faster")
    server_max_side: IntProperty(name="Server max side", default=0, min=0, options={"HIDDEN"},
                                 description="Largest image side the server last reported (0: not asked)")
    seed: IntProperty(name="Seed", default=42, min=0)
    job_name: StringProperty(name="Job", default="shot", description="Folder name under //mimo/")
    scene_plate: BoolProperty(name="Scene plate", default=False,
                              description="Render the scene without the bodies as the background layer")
    occlusion: BoolProperty(name="Occlusion (renders the plate too)", default=False,
                            description="Render what lies in front of the bodies as the occlusion mask; "
                                        "the scene plate is rendered and sent with it")
    plate_engine: EnumProperty(name="Plate engine", items=[
        ("WORKBENCH", "Workbench", "Fast solid shading"), ("CYCLES", "Cycles", "Path traced (slower)"),
        ("SCENE", "Scene", "The scene's own render engine")], default="WORKBENCH")
    # a copy of the last job's state, saved with the file (the panel reads bl/timers.py: undo
    # restores these properties, which must not hide a running job)
    status: StringProperty(name="Status", default="idle")
    capabilities: StringProperty(name="Capabilities", default="")
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    last_error: StringProperty(name="Last error", default="")
    job_dir: StringProperty(name="Output", default="", subtype="DIR_PATH")
    preview_image: StringProperty(name="Preview image", default="")


classes = (MIMO_PG_settings,)


def attach() -> None:
    bpy.types.Scene.mimo = PointerProperty(type=MIMO_PG_settings)
    bpy.types.Object.mimo_character = StringProperty(
        name="Character", subtype="FILE_PATH",
        description="This body's own character image (empty: the shot's). Bodies with their own "
                    "images are generated one after another and composited by which is in front")
    bpy.types.Object.mimo_shape = FloatVectorProperty(
        name="Shape", size=MAX_SHAPES, default=(0.0,) * MAX_SHAPES, soft_min=-3.0, soft_max=3.0,
        update=_shape_changed, description="Body shape coefficients of a MIMO rig")


def detach() -> None:
    for owner, name in ((bpy.types.Scene, "mimo"), (bpy.types.Object, "mimo_shape"),
                        (bpy.types.Object, "mimo_character")):
        if hasattr(owner, name):
            delattr(owner, name)
