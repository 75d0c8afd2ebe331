"""mimo: the GPU-side library of mimo-blender (body models, motion data, motion codes, MIMO networks
and pipeline). No ZeroMQ and no bpy here.

Shape glossary used in every docstring (``Shapes:`` blocks):

    B  batch            F  frames           C  channels
    H, W  image pixels  h, w  latent pixels (H // 8, W // 8)
    V  vertices         T  triangles        J  joints

Images are uint8 RGB ``(H, W, 3)`` row-major with the top row first unless stated otherwise.
Coordinates follow docs/CONVENTIONS.md: metres, SMPL axes (Y up, the body faces +Z, +X is the body's left),
OpenCV cameras (x right, y down, z forward) with pixel (u, v) centred at (u + 0.5, v + 0.5).
"""

__version__ = "0.1.0"
