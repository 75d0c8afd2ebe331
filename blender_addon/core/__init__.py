"""Everything of the add-on that does not need Blender: axis and camera conversion, SMPL-H rig
tables and read-back math, frame bookkeeping, the request builder and the background job client.

Contract: nothing in this package imports ``bpy`` or ``mathutils`` (a test enforces it), so all of
it runs under plain pytest. Arrays are numpy; shapes follow the glossary of ``mimo/__init__.py``
(F frames, J joints, V vertices, H x W pixels).
"""
