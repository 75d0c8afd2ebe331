"""``mimo weights download DIR``: fetch the MIMO weights and the three prior models into the
official layout (docs/MIMO.md §1). Runs only when a user asks; nothing else in mimo downloads.

The placement logic (:func:`plan_downloads`) is pure: given each repository's file listing it
decides which remote file lands at which path of the layout, so it is tested offline. The MIMO
repository id is configurable (``--mimo-repo``); its default and the paths inside it are not
verified from this machine, so the planner finds each MIMO file by its name anywhere in the repo.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_MIMO_REPO = "menyifang/MIMO"  # [unverified] override with --mimo-repo
SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
CLIP_REPO = "lambdalabs/sd-image-variations-diffusers"


class DownloadError(RuntimeError):
    """The hub could not be reached or refused a request: one line saying which and why."""


def check_reachable(endpoint: str, timeout: float = 10.0) -> None:
    """Fail fast (one connection attempt) when the hub's host cannot be reached at all, instead of
    huggingface_hub's retries. Skipped behind a proxy, which only the HTTP client knows how to use."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise DownloadError(f"cannot reach {endpoint} ({e.strerror or e}): check the network, "
                            f"or set HF_ENDPOINT to a mirror") from e


@dataclasses.dataclass(frozen=True)
class Source:
    """One file of the layout: ``dest`` comes from the first of ``candidates`` the repo has.

    repo: "mimo" (the configurable MIMO repo) or a fixed repo id.
    anywhere: also accept a candidate's file name in any folder of the repo (shortest path wins).
    """

    dest: str
    repo: str
    candidates: tuple[str, ...]
    anywhere: bool = False


SOURCES: tuple[Source, ...] = (
    Source("denoising_unet.pth", "mimo", ("denoising_unet.pth",), anywhere=True),
    Source("reference_unet.pth", "mimo", ("reference_unet.pth",), anywhere=True),
    Source("pose_guider.pth", "mimo", ("pose_guider.pth",), anywhere=True),
    Source("motion_module.pth", "mimo", ("motion_module.pth",), anywhere=True),
    Source("stable-diffusion-v1-5/unet/config.json", SD15_REPO, ("unet/config.json",)),
    Source("stable-diffusion-v1-5/unet/diffusion_pytorch_model.safetensors", SD15_REPO,
           ("unet/diffusion_pytorch_model.safetensors",)),
    Source("sd-vae-ft-mse/config.json", VAE_REPO, ("config.json",)),
    Source("sd-vae-ft-mse/diffusion_pytorch_model.safetensors", VAE_REPO,
           ("diffusion_pytorch_model.safetensors",)),
    Source("image_encoder/config.json", CLIP_REPO, ("image_encoder/config.json",)),
    Source("image_encoder/pytorch_model.bin", CLIP_REPO,
           ("image_encoder/pytorch_model.bin",)),
)


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    repo: str
    remote: str  # path inside the repo
    dest: str  # path inside the weights folder
    size: int | None  # bytes, when the listing says


def plan_downloads(listings: dict[str, dict[str, int | None]], mimo_repo: str = DEFAULT_MIMO_REPO,
                   sources: tuple[Source, ...] = SOURCES) -> list[PlannedFile]:
    """Decide which remote file goes where.

    Args:
        listings: repo id -> {path in repo: size in bytes or None}, for every repo of ``sources``.
        mimo_repo: the repo that stands for ``"mimo"`` in ``sources``.

    Raises ValueError naming the destination, the repo and what was looked for when a file is
    not in the listing.
    """
    plan = []
    for src in sources:
        repo = mimo_repo if src.repo == "mimo" else src.repo
        if repo not in listings:
            raise ValueError(f"listings: no file listing for repo '{repo}' (needed for {src.dest})")
        files = listings[repo]
        found = next((c for c in src.candidates if c in files), None)
        if found is None and src.anywhere:
            names = {c.rsplit("/", 1)[-1] for c in src.candidates}
            matches = sorted((p for p in files if p.rsplit("/", 1)[-1] in names), key=lambda p: (p.count("/"), p))
            found = matches[0] if matches else None
        if found is None:
            raise ValueError(f"{src.dest}: none of {list(src.candidates)} in repo '{repo}' "
                             f"({len(files)} files listed)")
        plan.append(PlannedFile(repo, found, src.dest, files[found]))
    return plan


def needs_download(folder: Path, item: PlannedFile) -> bool:
    """True unless ``folder/dest`` exists with the listed size (or any size when unknown)."""
    path = folder / item.dest
    if not path.is_file():
        return True
    return item.size is not None and path.stat().st_size != item.size


def _announce(folder: Path, item: PlannedFile, dry_run: bool, note: str) -> bool:
    """Print what becomes of ``item`` (have / would get / get, with ``note``); True when it is to
    be fetched now."""
    if not needs_download(folder, item):
        print(f"have     {item.dest}")
        return False
    print(f"{'would get' if dry_run else 'get'}      {item.dest}  <- {item.repo}:{item.remote} ({note})")
    return not dry_run


def _why(e: Exception) -> str:
    """A hub error in one line: its type and the first line of its message."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _list_files(api, repo: str) -> dict[str, int | None]:
    """Path -> size (None: unknown) of every file of ``repo`` on the hub."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HTTPError

    try:
        entries = list(api.list_repo_tree(repo, recursive=True))
    except (HTTPError, OSError) as e:
        raise DownloadError(f"cannot list the files of {repo} on {constants.ENDPOINT}: {_why(e)}") from e
    return {e.path: getattr(e, "size", None) for e in entries if hasattr(e, "size")}


def download_weights(weights_dir: str | Path, mimo_repo: str = DEFAULT_MIMO_REPO, token: str | None = None,
                     dry_run: bool = False) -> list[PlannedFile]:
    """Download every file of the layout into ``weights_dir`` (resumable; skips complete files).

    Interrupted downloads resume: huggingface_hub keeps partial files under
    ``weights_dir/.download/`` and continues them on the next run. Returns the plan.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import HTTPError

    folder = Path(weights_dir)
    check_reachable(constants.ENDPOINT)
    api = HfApi(token=token)
    repos = {mimo_repo if s.repo == "mimo" else s.repo for s in SOURCES}
    listings = {repo: _list_files(api, repo) for repo in sorted(repos)}
    try:
        plan = plan_downloads(listings, mimo_repo)
    except ValueError as e:
        raise DownloadError(str(e)) from e
    for item in plan:
        if not _announce(folder, item, dry_run, f"{item.size / 1e6:,.1f} MB" if item.size else "? MB"):
            continue
        staging = folder / ".download" / item.repo.replace("/", "--")
        try:
            got = hf_hub_download(item.repo, item.remote, local_dir=staging, token=token)
        except (HTTPError, OSError) as e:
            raise DownloadError(f"{item.dest}: download from {item.repo}:{item.remote} failed ({_why(e)}); "
                                "run the command again to resume") from e
        dest = folder / item.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, dest)
    return plan


# ------------------------------------------------------------------ decomposition models
def decompose_repos() -> dict[str, str]:
    """Stage -> Hugging Face repo id of the default ``mimo decompose`` models."""
    from mimo.decompose.models import DEFAULTS

    return dict(DEFAULTS)


_MODEL_FILES = ("config.json", "preprocessor_config.json", "processor_config.json")


def plan_model_files(listing: dict[str, int | None], repo: str = "") -> list[str]:
    """The files of a transformers model repo that ``from_pretrained`` needs: its configs and
    its weights (``model.safetensors``, or its shards with their index; else the PyTorch
    ``pytorch_model.bin`` form). Raises ValueError when the repo has no config or no weights.
    """
    names = set(listing)
    if "config.json" not in names:
        raise ValueError(f"{repo}: no config.json in the repo ({len(names)} files listed)")
    files = [f for f in _MODEL_FILES if f in names]
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if single in names:
            return files + [single]
        if index in names:
            stem = single.rsplit(".", 1)[0]
            shards = sorted(n for n in names if n.startswith(stem + "-") and "/" not in n)
            return files + [index] + shards
    raise ValueError(f"{repo}: no model.safetensors or pytorch_model.bin (or their shards) in the repo")


_PIPELINE_SIDE_FILES = (".json", ".txt", ".model")  # configs, tokenizer vocabularies and merges


def _pick_weights(names: set[str]) -> list[str] | None:
    """One weights form of a component folder: safetensors before .bin, the diffusers name before
    the transformers ones, a single file or an index with its shards; variants are never picked."""
    for ext in ("safetensors", "bin"):
        for stem in ("diffusion_pytorch_model", "model", "pytorch_model"):
            if f"{stem}.{ext}" in names:
                return [f"{stem}.{ext}"]
            if f"{stem}.{ext}.index.json" in names:
                shards = sorted(n for n in names if n.startswith(stem + "-") and n.endswith("." + ext))
                return [f"{stem}.{ext}.index.json"] + shards
    return None


def plan_pipeline_files(listing: dict[str, int | None], repo: str = "") -> list[str]:
    """The files of a diffusers pipeline repo that ``from_pretrained`` needs: ``model_index.json``
    and, in each component folder, its configs and tokenizer files and one weights form per
    model (:func:`_pick_weights`; no fp16/onnx/flax variants, no single-file checkpoints at the
    top). Raises ValueError when the
    repo is no pipeline or a component has no weights.
    """
    if "model_index.json" not in listing:
        raise ValueError(f"{repo}: no model_index.json in the repo (not a diffusers pipeline; "
                         f"{len(listing)} files listed)")
    files = ["model_index.json"]
    folders = sorted({p.split("/", 1)[0] for p in listing if p.count("/") == 1})
    for folder in folders:
        inside = {p.split("/", 1)[1]: size for p, size in listing.items()
                  if p.startswith(folder + "/") and p.count("/") == 1}
        side = sorted(n for n in inside if n.endswith(_PIPELINE_SIDE_FILES) and ".index." not in n)
        if not side:
            continue
        files += [f"{folder}/{n}" for n in side]
        if "config.json" not in inside:
            continue  # a scheduler or tokenizer: configs only
        weights = _pick_weights(set(inside))
        if not weights:
            raise ValueError(f"{repo}: no weights in {folder}/ (expected diffusion_pytorch_model.safetensors, "
                             "model.safetensors or their .bin forms)")
        files += [f"{folder}/{n}" for n in weights]
    return files


def _fetch_repo(folder: Path, api, repo: str, plan, label: str, token: str | None, dry_run: bool) -> Path:
    """Fetch the files ``plan(listing, repo)`` picks from ``repo`` into ``folder/<owner>--<name>/``
    (resumable; skips complete files), saying each with ``label``. Returns the folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HTTPError

    from mimo.decompose.models import folder_name

    listing = _list_files(api, repo)
    try:
        files = plan(listing, repo)
    except ValueError as e:
        raise DownloadError(str(e)) from e
    dest = folder / folder_name(repo)
    for name in files:
        item = PlannedFile(repo, name, f"{folder_name(repo)}/{name}", listing.get(name))
        if not _announce(folder, item, dry_run, label):
            continue
        try:
            hf_hub_download(repo, name, local_dir=dest, token=token)
        except (HTTPError, OSError) as e:
            raise DownloadError(f"{item.dest}: download from {repo}:{name} failed ({_why(e)}); "
                                "run the command again to resume") from e
    return dest


def download_inpaint_model(weights_dir: str | Path, repo: str, token: str | None = None,
                           dry_run: bool = False) -> Path:
    """Fetch a diffusers inpainting pipeline into ``weights_dir/<owner>--<name>/`` (what
    ``mimo decompose --models weights_dir --inpaint-model repo`` finds). Returns the folder."""
    from huggingface_hub import HfApi, constants

    check_reachable(constants.ENDPOINT)
    return _fetch_repo(Path(weights_dir), HfApi(token=token), repo, plan_pipeline_files, "inpaint", token, dry_run)


def download_decompose_models(weights_dir: str | Path, token: str | None = None, dry_run: bool = False
                              ) -> dict[str, Path]:
    """Fetch the four decomposition models into ``weights_dir/<owner>--<name>/`` (what
    ``mimo decompose --models weights_dir`` finds). Returns stage -> folder."""
    from huggingface_hub import HfApi, constants

    check_reachable(constants.ENDPOINT)
    api = HfApi(token=token)
    return {stage: _fetch_repo(Path(weights_dir), api, repo, plan_model_files, stage, token, dry_run)
            for stage, repo in decompose_repos().items()}
