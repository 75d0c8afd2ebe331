"""Build the extension zip: ``python blender_addon/build.py`` (what ``make addon`` runs).

1. Refresh ``vendor/``: byte-identical copies of the server's protocol and client modules and of
   the pure-numpy motion code of ``mimo.motion`` (retargeting, rotations, clip format, readers);
   tests/test_addon_package.py checks they match their sources.
2. Fetch the unmodified PyPI wheels of pyzmq and msgpack for Linux x86_64, Windows x64 and macOS
   (arm64 + x86_64), cp311, into a cache (``build/addon-wheels``; not committed: 3.4 MB of
   binaries that pip fetches reproducibly at the pinned versions).
3. Stage the add-on with the wheels, list them in the manifest and let Blender's own
   ``blender_ext.py build`` (from the bpy wheel) validate and zip it into
   ``dist/<id>-<version>.zip``.

``--check-vendor`` only reports vendored files that differ from their sources (exit 1).
"""
from __future__ import annotations

import argparse
import filecmp
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: vendored file (relative to blender_addon/) -> its source of truth (relative to the repository).
VENDOR = {
    "vendor/protocol.py": "server/protocol.py",
    "vendor/client.py": "server/client.py",
    "vendor/retarget.py": "mimo/motion/retarget.py",
    "vendor/rotations.py": "mimo/motion/rotations.py",
    "vendor/clip.py": "mimo/motion/clip.py",
    "vendor/bvh.py": "mimo/motion/bvh.py",
    "vendor/readers.py": "mimo/motion/readers.py",
}
#: copied into the staged extension only (a source checkout reads them where they are)
STAGE_DATA = {
    "data/open_body.npz": "mimo/body/data/open_body.npz",
    "data/LICENSE.md": "mimo/body/data/LICENSE.md",
}
WHEELS = ("pyzmq==27.3.0", "msgpack==1.2.4")
PLATFORMS = ("manylinux_2_28_x86_64", "win_amd64", "macosx_11_0_arm64", "macosx_11_0_x86_64")


class WheelFetchError(RuntimeError):
    """pip could not download the wheels (offline and not cached yet)."""


def vendor_pairs() -> list[tuple[str, str]]:
    """(vendored path, source path) for every source that exists in this checkout."""
    return [(os.path.join(HERE, v), os.path.join(ROOT, s)) for v, s in VENDOR.items()
            if os.path.exists(os.path.join(ROOT, s))]


def sync_vendor() -> list[str]:
    copied = []
    for dst, src in vendor_pairs():
        if not (os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False)):
            shutil.copyfile(src, dst)
            copied.append(os.path.relpath(dst, ROOT))
    return copied


def fetch_wheels(cache: str, platforms=PLATFORMS) -> list[str]:
    os.makedirs(cache, exist_ok=True)
    for plat in platforms:
        stamp = os.path.join(cache, f".{plat}.{'_'.join(WHEELS)}.ok")
        if os.path.exists(stamp):  # fetched before: the build works offline
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--no-deps", "--python-version", "3.11", "--implementation",
               "cp", "--abi", "cp311", "--platform", plat, "-d", cache, *WHEELS]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            noise = "is ignored: it is neither"
            raise WheelFetchError("build: pip download failed:\n" + "\n".join(
                line for line in (out.stdout + out.stderr).splitlines() if noise not in line))
        open(stamp, "w").close()
    wanted = [w.split("==") for w in WHEELS]
    return sorted(p for p in glob.glob(os.path.join(cache, "*.whl"))
                  if any(os.path.basename(p).startswith(f"{n}-{v}-") for n, v in wanted))


def blender_ext_script() -> str:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("build: the bpy wheel is needed for blender_ext.py (make setup installs it)")
    hits = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*", "scripts",
                                  "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    if not hits:
        raise SystemExit("build: blender_ext.py not found inside the bpy wheel")
    return hits[0]


def stage(stage_dir: str, wheels: list[str]) -> str:
    if os.path.exists(stage_dir):
        shutil.rmtree(stage_dir)
    shutil.copytree(HERE, stage_dir, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "build.py", "wheels", "data"))
    for dst, src in STAGE_DATA.items():
        os.makedirs(os.path.dirname(os.path.join(stage_dir, dst)), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, src), os.path.join(stage_dir, dst))
    os.makedirs(os.path.join(stage_dir, "wheels"))
    for w in wheels:
        shutil.copy2(w, os.path.join(stage_dir, "wheels"))
    manifest = os.path.join(stage_dir, "blender_manifest.toml")
    text = open(manifest, encoding="utf-8").read()
    listed = "wheels = [\n" + "".join(f'  "./wheels/{os.path.basename(w)}",\n' for w in wheels) + "]"
    text, n = re.subn(r"(?ms)^wheels = \[.*?^\]", listed, text)
    if n != 1:
        raise SystemExit("build: blender_manifest.toml must contain one `wheels = [ ... ]` list")
    open(manifest, "w", encoding="utf-8").write(text)
    return stage_dir


def build(out_dir: str, cache: str, platforms=PLATFORMS, wheel_files: list[str] | None = None,
          sync: bool = True) -> str:
    """Build the zip and return its path. ``sync=False`` zips ``vendor/`` as it is (tests do, so
    they never rewrite the checkout and the byte-identity test keeps its meaning)."""
    if sync:
        sync_vendor()
    wheels = wheel_files if wheel_files is not None else fetch_wheels(cache, platforms)
    stage_dir = stage(os.path.join(ROOT, "build", "addon-stage", "mimo_blender"), wheels)
    os.makedirs(out_dir, exist_ok=True)
    script = blender_ext_script()
    subprocess.run([sys.executable, script, "build", "--source-dir", stage_dir,
                    "--output-dir", out_dir], check=True, stdout=subprocess.DEVNULL)
    version = re.search(r'(?m)^version = "([^"]+)"', open(os.path.join(HERE, "blender_manifest.toml")).read())[1]
    path = os.path.join(out_dir, f"mimo_blender-{version}.zip")
    if not os.path.exists(path):
        raise SystemExit(f"build: expected {path} from blender_ext.py")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "dist"))
    p.add_argument("--wheels-cache", default=os.path.join(ROOT, "build", "addon-wheels"))
    p.add_argument("--check-vendor", action="store_true")
    args = p.parse_args(argv)
    if args.check_vendor:
        bad = [os.path.relpath(d, ROOT) for d, s in vendor_pairs()
               if not (os.path.exists(d) and filecmp.cmp(s, d, shallow=False))]
        for b in bad:
            print(f"out of date: {b} (run `make addon`)")
        return 1 if bad else 0
    try:
        print(build(args.out, args.wheels_cache))
    except WheelFetchError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
