"""The Blender layer: converts bpy data <-> core types; nothing here is imported without bpy."""
