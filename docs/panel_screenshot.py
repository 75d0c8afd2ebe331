"""Draw the add-on's panel in a real Blender window and save it as docs/panel.png (README).

Blender draws its UI only with a display; without one, Xvfb gives it one. Debian 12 packages
Blender 3.4.1, older than the add-on's minimum (4.2, see blender_addon/blender_manifest.toml),
so this script imports the add-on from the source tree (no extension install) and, for a Blender
before 4.1, drops the ``placeholder`` argument of ``UILayout.prop`` (the greyed hint in an empty
field; the fields it fills here are never empty, so nothing drawn differs). The sidebar tab is
picked by a simulated click (``--enable-event-simulate``). From the repository root:

    apt-get install -y blender xvfb python3-numpy
    blender -b --factory-startup --python-expr \\
        "import bpy; bpy.ops.wm.save_as_mainfile(filepath='/tmp/start.blend')"   # (no splash)
    xvfb-run -a -s "-screen 0 1600x1200x24" blender --factory-startup --enable-event-simulate \\
        /tmp/start.blend --python docs/panel_screenshot.py

The scene: the open body walking (examples/motions/walk.npz), Add Camera, the example character,
the MIMO backend; the 3D view through the camera with the sidebar's MIMO tab open.
"""
import os
import sys
import traceback

import bpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "panel.png")
TAB_FROM_TOP = 215  # px from the 3D view's top to the MIMO tab (default layout, UI scale 1)
sys.path.insert(0, ROOT)

import blender_addon  # noqa: E402

if bpy.app.version < (4, 1, 0):
    from blender_addon.bl import panel

    class _Layout:
        """A UILayout whose prop() ignores ``placeholder`` (Blender 4.1+); sub-layouts too."""

        def __init__(self, layout):
            object.__setattr__(self, "_l", layout)

        def __getattr__(self, name):
            a = getattr(self._l, name)
            if name == "prop":
                return lambda *args, placeholder=None, **kw: a(*args, **kw)
            if callable(a):
                def call(*args, **kw):
                    r = a(*args, **kw)
                    return _Layout(r) if isinstance(r, bpy.types.UILayout) else r
                return call
            return a

        def __setattr__(self, name, value):
            setattr(self._l, name, value)

    class _Panel:
        def __init__(self, p):
            self.layout = _Layout(p.layout)

    for cls in panel.classes:
        cls.draw = (lambda draw: lambda self, context: draw(_Panel(self), context))(cls.draw)

blender_addon.register()


def _view3d():
    win = bpy.context.window_manager.windows[0]
    return win, next(a for a in win.screen.areas if a.type == "VIEW_3D")


def _ui(area):
    return next(r for r in area.regions if r.type == "UI")


def setup():
    win, area = _view3d()
    with bpy.context.temp_override(window=win, area=area):
        for o in list(bpy.data.objects):
            bpy.data.objects.remove(o)
        bpy.ops.mimo.add_body()
        bpy.ops.mimo.import_motion(filepath=os.path.join(ROOT, "examples", "motions", "walk.npz"))
        bpy.ops.mimo.add_camera()
    scene = bpy.context.scene
    scene.camera.data.lens = 28
    scene.frame_set(12)
    space = area.spaces.active
    space.show_region_ui = True
    space.region_3d.view_perspective = "CAMERA"
    s = scene.mimo
    s.job_name, s.backend, s.server = "walk", "mimo", "tcp://127.0.0.1:5555"
    # the example character, from a folder whose name says nothing of this machine
    import shutil
    import tempfile

    shot = os.path.join(tempfile.gettempdir(), "shot")
    os.makedirs(shot, exist_ok=True)
    s.character = shutil.copy(os.path.join(ROOT, "examples", "character.png"), shot)


def _tab():
    _, area = _view3d()
    ui = _ui(area)
    return ui.x + ui.width - 13, area.y + area.height - TAB_FROM_TOP


def hover():
    x, y = _tab()
    _view3d()[0].event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)


def click():
    win, _ = _view3d()
    x, y = _tab()
    win.event_simulate(type="LEFTMOUSE", value="PRESS", x=x, y=y)
    win.event_simulate(type="LEFTMOUSE", value="RELEASE", x=x, y=y)


def snap():
    win, area = _view3d()
    bpy.ops.wm.redraw_timer(type="DRAW_WIN_SWAP", iterations=1)
    with bpy.context.temp_override(window=win, area=area):
        bpy.ops.screen.screenshot_area(filepath=OUT)
    print(f"wrote {OUT} (Blender {bpy.app.version_string})")


def later(t, f):
    def call():
        try:
            f()
        except Exception:
            traceback.print_exc()
        return None
    bpy.app.timers.register(call, first_interval=t)


later(1.0, setup)
later(2.3, hover)
later(2.6, click)
later(4.0, snap)
later(5.0, bpy.ops.wm.quit_blender)
