"""Model names to local paths: the bundled demo, local files, and Hugging Face Hub repos.

:func:`resolve_model` is what ``Model.load`` and the command-line tools call on what the user
typed:

- an existing local path (a checkpoint directory or a ``.gguf`` file) is used as it is;
- ``"demo"`` is the tiny model bundled with lfmrt (:func:`lfmrt.demo_model_path`);
- ``"owner/name"`` is a Hugging Face repo, downloaded once into the Hub cache (with a progress
  bar) and reused from it afterwards. A safetensors repo (``LiquidAI/LFM2.5-350M``) is fetched
  as a checkpoint directory (config, weights, tokenizer, template); a GGUF repo
  (``LiquidAI/LFM2.5-350M-GGUF``) gives one file, chosen by ``file="*Q4_K_M.gguf"`` (a name or
  glob) or by a quant tag after a colon (``"LiquidAI/LFM2.5-350M-GGUF:Q4_K_M"``), by default
  Q4_K_M when the repo has it.

Downloads go through ``huggingface_hub`` (``pip install "lfmrt[hub]"``), which honours
``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE``/``HF_HOME`` and ``HF_TOKEN``. Offline, or when the Hub
cannot be reached, only the cache is read, and a model that is not cached raises
:class:`~lfmrt.LoadError` saying what is missing and how to load a local path instead. Every
network request has a short timeout, so nothing hangs.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from .demo import demo_model_path
from .errors import LoadError

DEMO_NAME = "demo"
DEFAULT_GGUF_QUANT = "Q4_K_M"
# Files a checkpoint directory needs; weights and tokenizer files are all the loaders read.
CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*"]
# Seconds before a Hub request without an answer counts as "no network".
NETWORK_TIMEOUT_S = 10.0

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_TRUE = {"1", "true", "yes", "on"}


def is_repo_id(name: str) -> bool:
    """Whether ``name`` looks like a Hugging Face repo id (``owner/name``, optionally with a
    ``:QUANT`` tag), as opposed to a local path."""
    repo = name.split(":", 1)[0]
    return bool(_REPO_ID.match(repo)) and ".." not in repo and not repo.endswith((".gguf", ".safetensors"))


def split_quant_tag(name: str) -> Tuple[str, Optional[str]]:
    """``"owner/name:Q4_K_M"`` -> ``("owner/name", "Q4_K_M")``; no tag -> ``(name, None)``."""
    repo, _, tag = name.partition(":")
    return repo, (tag or None)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) asks for no network."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> str:
    """The Hub cache folder, read from the environment now (``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), as ``huggingface_hub`` reads it."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def _hub_module():
    """``huggingface_hub``, or a LoadError telling how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise LoadError(
            "loading a model by Hugging Face repo id needs huggingface_hub: "
            'pip install "lfmrt[hub]" (or pass the path of a local checkpoint directory or .gguf file)'
        ) from None
    return huggingface_hub


def _local_hint(repo_id: str) -> str:
    return (
        f"download it on a machine with network (`hf download {repo_id}`) and pass the folder or "
        ".gguf file to Model.load / lfmrt-chat, or run `lfmrt-chat --demo` for the bundled demo model"
    )


def select_gguf(files: Sequence[str], file: Optional[str], quant: Optional[str], repo_id: str) -> str:
    """The one ``.gguf`` file of ``files`` to use.

    ``file`` is a name or glob (``"*Q4_K_M.gguf"``); ``quant`` a tag matched case-insensitively
    against the name (``"q8_0"``). With neither, Q4_K_M if there is one, else the only file.

    Raises:
        LoadError: nothing matches, or several files match (the message lists them).
    """
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    if file is not None:
        matches = [f for f in ggufs if fnmatch.fnmatch(f, file) or fnmatch.fnmatch(os.path.basename(f), file)]
        wanted = f"file {file!r}"
    else:
        tag = (quant or DEFAULT_GGUF_QUANT).lower()
        matches = [f for f in ggufs if re.search(rf"(^|[-_.]){re.escape(tag)}\.gguf$", os.path.basename(f).lower())]
        wanted = f"quant {quant or DEFAULT_GGUF_QUANT}"
        if not matches and quant is None and len(ggufs) == 1:
            matches = ggufs
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(os.path.basename(f) for f in ggufs) or "none"
    if not matches:
        raise LoadError(f"{repo_id}: no .gguf file for {wanted} (available: {available})")
    raise LoadError(
        f"{repo_id}: {wanted} matches several files ({', '.join(matches)}); name one with file=..."
    )


def _pick(repo_id: str, files: Sequence[str], file: Optional[str], quant: Optional[str]) -> Tuple[List[str], Optional[str]]:
    """(patterns to download, the chosen .gguf file or None for a checkpoint directory)."""
    top_level = [f for f in files if "/" not in f]
    has_checkpoint = "config.json" in top_level and any(f.endswith(".safetensors") for f in top_level)
    if file is None and quant is None and has_checkpoint:
        return CHECKPOINT_PATTERNS, None
    if any(f.lower().endswith(".gguf") for f in files):
        chosen = select_gguf(files, file, quant, repo_id)
        return [chosen], chosen
    if file is not None or quant is not None:
        raise LoadError(f"{repo_id}: has no .gguf files, so file=/quant= cannot choose one")
    raise LoadError(f"{repo_id}: neither an LFM2 checkpoint (config.json + .safetensors) nor .gguf files")


def _cached_snapshot(hub, repo_id: str, revision: Optional[str], cache_dir: str) -> Optional[str]:
    """The cached snapshot folder of ``repo_id`` at ``revision``, or None if not cached."""
    try:
        return hub.snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # LocalEntryNotFoundError and kin: nothing usable cached
        return None


def _files_in(folder: str) -> List[str]:
    root = Path(folder)
    return sorted(str(p.relative_to(root)).replace(os.sep, "/") for p in root.rglob("*") if p.is_file())


def _from_cache(hub, repo_id: str, revision: Optional[str], file: Optional[str], quant: Optional[str], cache_dir: str, why: str) -> str:
    """The model from the cache alone; LoadError (saying ``why`` the Hub was not asked) if it is
    not there."""
    snapshot = _cached_snapshot(hub, repo_id, revision, cache_dir)
    if snapshot is None:
        raise LoadError(
            f"{repo_id}: not in the Hugging Face cache ({cache_dir}) and {why}; {_local_hint(repo_id)}"
        )
    files = _files_in(snapshot)
    try:
        _, chosen = _pick(repo_id, files, file, quant)
    except LoadError as error:
        raise LoadError(f"{error} in the cached snapshot {snapshot}, and {why}; {_local_hint(repo_id)}") from None
    if chosen is None:
        missing = [f for f in ("config.json",) if f not in files]
        if missing:
            raise LoadError(f"{repo_id}: the cached snapshot {snapshot} lacks {', '.join(missing)}, and {why}")
        return snapshot
    return os.path.join(snapshot, chosen)


def _is_connection_error(error: BaseException) -> bool:
    """A failure to reach the Hub at all (no network, DNS, timeout, proxy), as opposed to an
    answer from it (not found, gated, unauthorised)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if "LocalEntryNotFoundError" in names:  # huggingface_hub's "unreachable and not cached"
        return True
    if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError", "EntryNotFoundError", "HFValidationError"}:
        return False
    if names & {"OfflineModeIsEnabled", "ConnectionError", "TimeoutException", "ConnectError", "Timeout", "NetworkError", "TransportError", "ProxyError"}:
        return True
    return isinstance(error, (OSError, TimeoutError)) and "HfHubHTTPError" not in names


def download(repo_id: str, *, revision: Optional[str] = None, file: Optional[str] = None, quant: Optional[str] = None) -> str:
    """Downloads (or finds in the cache) a model from the Hugging Face Hub; returns its local path.

    Args:
        repo_id: ``"owner/name"``.
        revision: a branch, tag or commit (default: ``main``).
        file: for a GGUF repo, the file's name or a glob (``"*Q4_K_M.gguf"``).
        quant: for a GGUF repo, a quant tag (``"Q8_0"``) instead of ``file``.

    Returns:
        the snapshot folder of a checkpoint repo, or the path of the chosen ``.gguf`` file.

    Raises:
        LoadError: huggingface_hub is missing, the repo or file does not exist, or the Hub cannot
            be reached (or ``HF_HUB_OFFLINE=1``) and the model is not cached.
    """
    hub = _hub_module()
    cache_dir = hub_cache_dir()
    if hub_offline():
        return _from_cache(hub, repo_id, revision, file, quant, cache_dir, "HF_HUB_OFFLINE is set")
    try:
        # An explicit timeout on every request: huggingface_hub's own client waits forever.
        info = hub.HfApi().model_info(repo_id, revision=revision, timeout=NETWORK_TIMEOUT_S)
        files = [sibling.rfilename for sibling in info.siblings or []]
        patterns, chosen = _pick(repo_id, files, file, quant)
        wanted = [f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in patterns)]
        if chosen is not None:
            wanted = [chosen]
        local = ""
        for filename in wanted:  # one progress bar per file; refs/<revision> is recorded
            local = hub.hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir, etag_timeout=NETWORK_TIMEOUT_S
            )
        snapshot = local[: len(local) - len(wanted[-1])].rstrip("/" + os.sep)
    except LoadError:
        raise
    except Exception as error:
        if _is_connection_error(error):
            return _from_cache(
                hub, repo_id, revision, file, quant, cache_dir,
                f"the Hub could not be reached ({type(error).__name__})",
            )
        raise LoadError(f"{repo_id}: {type(error).__name__}: {error}") from None
    return snapshot if chosen is None else os.path.join(snapshot, chosen)


def resolve_model(
    name: Union[str, "os.PathLike[str]"], *, revision: Optional[str] = None, file: Optional[str] = None
) -> str:
    """The local path of the model the user named (see the module docstring).

    Args:
        name: a local path, ``"demo"``, or a Hub repo id (``"owner/name"`` or
            ``"owner/name:QUANT"``).
        revision: for a repo id: the branch, tag or commit.
        file: for a GGUF repo: the file's name or glob.

    Raises:
        LoadError: as :func:`download`; or the name is neither an existing path nor a repo id.
    """
    path = os.fspath(name)
    if os.path.exists(path):
        return path
    if path == DEMO_NAME:
        return demo_model_path()
    if is_repo_id(path):
        repo_id, quant = split_quant_tag(path)
        return download(repo_id, revision=revision, file=file, quant=quant)
    raise LoadError(
        f"{path}: no such file or directory (give a checkpoint directory, a .gguf file, "
        f"a Hugging Face repo id like LiquidAI/LFM2.5-350M, or 'demo')"
    )
