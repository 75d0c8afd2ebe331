"""Build the extension zip: ``python3 blender_addon/build.py`` (what ``make addon`` runs).

Needs only Python 3.11+ with pip (no project dependencies, no Blender):

1. Refresh ``vendor/``: byte-identical copies of the server's protocol and client modules and of
   the pure-numpy motion code of ``mimo.motion`` (retargeting, rotations, clip format, readers);
   tests/test_addon_package.py checks they match their sources.
2. Fetch the unmodified PyPI wheels of pyzmq and msgpack for Linux x86_64, Windows x64 and macOS
   (arm64 + x86_64), for every Python that the Blender versions of the manifest's range
   (``blender_version_min`` up to, not including, ``blender_version_max``) run: see
   ``BLENDER_PYTHONS``. They go to a cache (``build/addon-wheels``; not committed: binaries that pip
   fetches reproducibly at the pinned versions).
3. Stage the add-on with the wheels and the licence, list the wheels in the manifest, check it
   (``check_manifest``) and zip it into ``dist/<id>-<version>.zip``, leaving out the manifest's
   ``[build] paths_exclude_pattern``. (The tests also validate the zip with Blender's own
   ``blender_ext.py validate`` from the bpy wheel, and install it in Blender 4.2 and 5.0.)

``--check-vendor`` only reports vendored files that differ from their sources (exit 1).
"""
from __future__ import annotations

import argparse
import filecmp
import fnmatch
import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: vendored file (relative to blender_addon/) -> its source of truth (relative to the repository).
#: The one list: the build, ``--check-vendor`` and the tests (tests/test_addon_package.py,
#: tests/test_protocol.py, tests/test_retarget.py) all read it; a source that moved fails them.
VENDOR = {
    "vendor/protocol.py": "server/protocol.py",
    "vendor/protocol_messages.py": "server/protocol_messages.py",
    "vendor/protocol_wire.py": "server/protocol_wire.py",
    "vendor/protocol_checks.py": "server/protocol_checks.py",
    "vendor/client.py": "server/client.py",
    "vendor/retarget.py": "mimo/motion/retarget.py",
    "vendor/rotations.py": "mimo/motion/rotations.py",
    "vendor/clip.py": "mimo/motion/clip.py",
    "vendor/bvh.py": "mimo/motion/bvh.py",
    "vendor/readers.py": "mimo/motion/readers.py",
    "vendor/keypoints.py": "mimo/codes/keypoints.py",
    "vendor/pass_images.py": "mimo/codes/pass_images.py",
    "vendor/joints.py": "mimo/body/joints.py",
}
#: copied into the staged extension only (a source checkout reads them where they are)
STAGE_DATA = {
    "data/open_body.npz": "mimo/body/data/open_body.npz",
    "data/LICENSE.md": "mimo/body/data/LICENSE.md",
}
WHEELS = ("pyzmq==27.3.0", "msgpack==1.2.4")
PLATFORMS = ("manylinux_2_28_x86_64", "win_amd64", "macosx_11_0_arm64", "macosx_11_0_x86_64")
#: (first Blender version, the Python it bundles), in order: 4.2 LTS to 5.0 run Python 3.11, and
#: 5.1 moved to 3.13 (Blender's release notes, Python section of each release).
BLENDER_PYTHONS = (((4, 2, 0), "3.11"), ((5, 1, 0), "3.13"))
LICENSE_FILES = ("LICENSE",)  # blender_addon/LICENSE: the GPL-3.0 text the manifest's licence names


class WheelFetchError(RuntimeError):
    """pip could not download the wheels (offline and not cached yet)."""


class VendorSourceMissing(FileNotFoundError):
    """A source named in :data:`VENDOR` is not where the list says: it moved or was renamed."""


def vendor_pairs() -> list[tuple[str, str]]:
    """(vendored path, source path) for every entry of :data:`VENDOR`; raises
    :class:`VendorSourceMissing` naming a source that is not in this checkout (a moved file must
    be moved in VENDOR too, not silently dropped from the add-on)."""
    missing = [s for s in VENDOR.values() if not os.path.isfile(os.path.join(ROOT, s))]
    if missing:
        raise VendorSourceMissing(f"vendored sources not found (moved? update VENDOR in "
                                  f"blender_addon/build.py): {', '.join(missing)}")
    return [(os.path.join(HERE, v), os.path.join(ROOT, s)) for v, s in VENDOR.items()]


def sync_vendor() -> list[str]:
    copied = []
    for dst, src in vendor_pairs():
        if not (os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False)):
            shutil.copyfile(src, dst)
            copied.append(os.path.relpath(dst, ROOT))
    return copied


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")]
    return tuple((parts + [0, 0, 0])[:3])


def manifest_pythons(manifest: dict) -> list[str]:
    """The Pythons of every Blender version from blender_version_min up to (not including)
    blender_version_max (no max: every Python from the min on)."""
    lo = parse_version(manifest["blender_version_min"])
    hi = parse_version(manifest["blender_version_max"]) if manifest.get("blender_version_max") else None
    out = []
    for i, (first, python) in enumerate(BLENDER_PYTHONS):
        last = BLENDER_PYTHONS[i + 1][0] if i + 1 < len(BLENDER_PYTHONS) else None  # exclusive
        if (last is None or lo < last) and (hi is None or first < hi):
            out.append(python)
    return out


def read_manifest(path: str = os.path.join(HERE, "blender_manifest.toml")) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def fetch_wheels(cache: str, pythons: list[str], platforms=PLATFORMS) -> list[str]:
    """The pinned wheels for each Python and platform (cp3X, or the stable ABI abi3)."""
    os.makedirs(cache, exist_ok=True)
    found: set[str] = set()
    for python in pythons:
        tag = "cp" + python.replace(".", "")
        for plat in platforms:
            stamp = os.path.join(cache, f".{tag}.{plat}.{'_'.join(WHEELS)}.ok")
            if not os.path.exists(stamp):  # fetched before: the build works offline
                cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                       "--only-binary=:all:", "--no-deps", "--python-version", python, "--implementation",
                       "cp", "--abi", tag, "--abi", "abi3", "--platform", plat, "-d", cache, *WHEELS]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    noise = "is ignored: it is neither"
                    raise WheelFetchError(f"build: pip download failed for Python {python} on {plat}:\n" + "\n".join(
                        line for line in (out.stdout + out.stderr).splitlines() if noise not in line))
                open(stamp, "w").close()
            found.update(_matching(cache, python, plat))
    return sorted(os.path.join(cache, w) for w in found)


def _matching(cache: str, python: str, plat: str) -> list[str]:
    """The cached wheel of each pinned package that serves ``python`` on ``plat`` (a wheel built
    for that very Python preferred over a stable-ABI one)."""
    out = []
    for spec in WHEELS:
        name, version = spec.split("==")
        fits = [w for w in sorted(os.listdir(cache)) if w.startswith(f"{name}-{version}-") and _serves(w, python, plat)]
        if not fits:
            raise WheelFetchError(f"build: no {name} {version} wheel for Python {python} on {plat} in {cache}")
        exact = [w for w in fits if "-abi3-" not in w]
        out.append((exact or fits)[0])
    return out


def _serves(wheel: str, python: str, plat: str) -> bool:
    """Whether ``wheel`` (a file name) installs on CPython ``python`` ("3.11") on ``plat`` (one of
    PLATFORMS): its own cp3X build, or the stable ABI (abi3) of an older-or-equal CPython; the same
    OS and CPU (a macOS universal2 wheel serves both Mac CPUs)."""
    parts = os.path.basename(wheel).removesuffix(".whl").split("-")
    if len(parts) != 5:
        return False
    py, abi, plats = parts[2], parts[3], parts[4].split(".")
    tag = "cp" + python.replace(".", "")
    if not ((py == tag and abi == tag) or (abi == "abi3" and py.startswith("cp3") and int(py[3:]) <= int(tag[3:]))):
        return False
    arch = plat.rsplit("_", 1)[-1] if not plat.endswith("x86_64") else "x86_64"
    for p in plats:
        p_arch = p.rsplit("_", 1)[-1] if not p.endswith("x86_64") else "x86_64"
        if plat.startswith("manylinux") and p.startswith(("manylinux", "linux")) and p_arch == arch:
            return True
        if plat.startswith("win") and p == plat:
            return True
        if plat.startswith("macosx") and p.startswith("macosx") and p_arch in (arch, "universal2"):
            return True
    return False


def blender_ext_script() -> str | None:
    """Blender's own extension tool from an installed bpy wheel (tests use it to validate)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    hits = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*", "scripts",
                                  "addons_core", "bl_pkg", "cli", "blender_ext.py"))
    return hits[0] if hits else None


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


def check_manifest(manifest: dict, names: list[str]) -> None:
    """What Blender checks when it installs the zip, and what we promise: every listed wheel is in
    the zip and every wheel in the zip is listed; each pinned package has a wheel for every Python
    of the supported Blender range on every platform; the licence file is there."""
    for key in ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                "blender_version_min", "license"):
        if not manifest.get(key):
            raise SystemExit(f"build: blender_manifest.toml lacks {key}")
    listed = sorted(w.removeprefix("./") for w in manifest.get("wheels", []))
    zipped = sorted(n for n in names if n.startswith("wheels/"))
    if listed != zipped:
        raise SystemExit(f"build: manifest wheels {listed} differ from the zip's {zipped}")
    for python in manifest_pythons(manifest):
        for plat in PLATFORMS:
            for spec in WHEELS:
                name = spec.split("==")[0]
                ok = [w for w in zipped if os.path.basename(w).startswith(name + "-") and _serves(w, python, plat)]
                if not ok:
                    raise SystemExit(f"build: no {name} wheel for Python {python} on {plat} in the zip")
    for lic in LICENSE_FILES:
        if lic not in names:
            raise SystemExit(f"build: {lic} missing from the zip")


def write_zip(stage_dir: str, path: str, exclude: list[str]) -> list[str]:
    """Zip ``stage_dir``'s files at the archive's root, minus ``exclude`` (gitignore-like patterns
    as in the manifest's ``[build] paths_exclude_pattern``: ``dir/`` for folders, globs otherwise)."""
    names = []
    for folder, dirs, files in os.walk(stage_dir):
        rel_dir = os.path.relpath(folder, stage_dir).replace(os.sep, "/")
        dirs[:] = sorted(d for d in dirs if not any(p.endswith("/") and fnmatch.fnmatch(d, p[:-1]) for p in exclude))
        for f in sorted(files):
            rel = f if rel_dir == "." else f"{rel_dir}/{f}"
            if not any(not p.endswith("/") and (fnmatch.fnmatch(f, p) or fnmatch.fnmatch(rel, p.lstrip("/")))
                       for p in exclude):
                names.append(rel)
    tmp = path + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in names:
            z.write(os.path.join(stage_dir, rel), rel)
    os.replace(tmp, path)
    return names


def build(out_dir: str, cache: str, platforms=PLATFORMS, wheel_files: list[str] | None = None,
          sync: bool = True) -> str:
    """Build the zip and return its path. ``sync=False`` zips ``vendor/`` as it is (tests do, so
    they never rewrite the checkout and the byte-identity test keeps its meaning)."""
    if sync:
        sync_vendor()
    manifest = read_manifest()
    wheels = wheel_files if wheel_files is not None else fetch_wheels(cache, manifest_pythons(manifest), platforms)
    stage_dir = stage(os.path.join(ROOT, "build", "addon-stage", manifest["id"]), wheels)
    staged = read_manifest(os.path.join(stage_dir, "blender_manifest.toml"))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{manifest['id']}-{manifest['version']}.zip")
    names = write_zip(stage_dir, path, staged.get("build", {}).get("paths_exclude_pattern", []))
    check_manifest(staged, names)
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
