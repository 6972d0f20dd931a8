"""How model files reach every Ray worker without copying them by hand.

A processor's ``model_source`` is one of:

- a local path (a checkpoint directory or ``.gguf`` file) that every node sees at the same
  place: shared storage (NFS, a mounted bucket), or a path baked into the image;
- ``"demo"`` or a Hugging Face repo id, resolved by each worker in its own Hub cache (the first
  actor on a node downloads, later ones read the cache);
- a :class:`ModelFiles` from :func:`put_model`: the checkpoint's bytes put once into Ray's
  object store, written by each node into its temp directory (once per node: actors on the same
  node share the copy, and so the page cache of its memory-mapped weights). For small models;
  the object store holds the whole checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ..errors import LoadError
from ..hub import resolve_model

if TYPE_CHECKING:
    from ..model import Model

ModelSource = Union[str, "os.PathLike[str]", "ModelFiles"]

# What the HF loader reads besides the weights (lfmrt.loaders.hf); other files in a checkpoint
# directory (READMEs, other formats' weights) are left behind.
_HF_METADATA = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja")


def checkpoint_files(path: str) -> List[str]:
    """The files, relative to ``path``'s directory, that loading ``path`` reads: a ``.gguf``
    file itself, or a checkpoint directory's metadata and safetensors weights (one file, an
    index and its shards, or every ``*.safetensors``).

    Raises:
        LoadError: ``path`` is neither, or an index names a shard that is missing.
    """
    if os.path.isfile(path):
        return [os.path.basename(path)]
    if not os.path.isdir(path):
        raise LoadError(f"{path}: no such checkpoint directory or file")
    names = [name for name in _HF_METADATA if os.path.isfile(os.path.join(path, name))]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        weights = ["model.safetensors"]
    elif os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise LoadError(f"{index}: cannot read its weight_map ({error})") from error
        for shard in shards:
            if not os.path.isfile(os.path.join(path, shard)):
                raise LoadError(f"{index}: names shard {shard}, which is missing")
        weights = ["model.safetensors.index.json", *shards]
    else:
        weights = sorted(name for name in os.listdir(path) if name.endswith(".safetensors"))
    if "config.json" not in names or not weights:
        raise LoadError(f"{path}: not a checkpoint directory (needs config.json and safetensors weights)")
    return names + weights


@dataclass(frozen=True)
class ModelFiles:
    """A checkpoint's files in Ray's object store (make one with :func:`put_model`).

    Keep it referenced while datasets that use it run: the object store frees the files when
    the last reference goes, and an actor restarted after that could not load them.

    Attributes:
        name: where the files came from (for messages).
        digest: SHA-256 over the files' names and bytes; names the copy each node writes.
        entry: what ``Model.load`` opens inside the copy: ``""`` for a directory, else the file.
        files: an ObjectRef of ``{relative name: bytes}``.
    """

    name: str
    digest: str
    entry: str
    files: Any

    def materialise(self, root: Optional[str] = None) -> str:
        """The path to load, after writing the files under ``root`` (default: the system temp
        directory's ``lfmrt-ray-models``) unless this node already has them.

        The copy is written into a private folder and renamed into place, so a reader never
        sees a half-written one, and two actors on a node racing to write it keep one.
        """
        import ray

        root = root or os.path.join(tempfile.gettempdir(), "lfmrt-ray-models")
        target = os.path.join(root, self.digest)
        if not os.path.isdir(target):
            os.makedirs(root, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".{self.digest[:16]}-", dir=root)
            try:
                for relative, data in ray.get(self.files).items():
                    with open(os.path.join(staging, relative), "wb") as f:
                        f.write(data)
                os.rename(staging, target)
            except OSError:
                if not os.path.isdir(target):  # not another actor's copy winning the race
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return os.path.join(target, self.entry) if self.entry else target


def put_model(source: Union[str, "os.PathLike[str]"], *, file: Optional[str] = None, revision: Optional[str] = None) -> ModelFiles:
    """Puts a checkpoint's files into Ray's object store once, for every actor to load.

    Args:
        source: what ``Model.load`` takes: a directory, a ``.gguf`` file, ``"demo"``, a repo id
            (resolved here, on the driver).
        file, revision: for a repo id, as for ``Model.load``.

    Raises:
        LoadError: the source cannot be resolved or is not a checkpoint.
        ImportError: Ray is not installed.
    """
    ray = import_ray()
    path = resolve_model(source, revision=revision, file=file)
    directory, entry = (os.path.dirname(path), os.path.basename(path)) if os.path.isfile(path) else (path, "")
    files: Dict[str, bytes] = {}
    digest = hashlib.sha256()
    for relative in checkpoint_files(path):
        with open(os.path.join(directory, relative), "rb") as f:
            data = f.read()
        files[relative] = data
        digest.update(relative.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return ModelFiles(name=os.fspath(source), digest=digest.hexdigest(), entry=entry, files=ray.put(files))


def load_model(source: ModelSource, **load_kwargs: Any) -> "Model":
    """The model ``source`` names (see the module's doc), loaded with ``Model.load``'s keywords."""
    from ..model import Model

    path = source.materialise() if isinstance(source, ModelFiles) else source
    return Model.load(path, **load_kwargs)


def import_ray() -> Any:
    """The ``ray`` module, or ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the processor's half of Ray
    except ImportError as error:
        raise ImportError(f"lfmrt's Ray integration needs Ray Data: pip install 'lfmrt[ray]' ({error})") from error
    return ray
