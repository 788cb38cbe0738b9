"""A local Hugging Face model folder: its JSON files, and its tensors by name in whichever files hold them.

Weights are read from `model.safetensors`, sharded safetensors (`model.safetensors.index.json`),
`pytorch_model.bin` (with `weights_only=True`: no code in a pickle runs) or its sharded index.
Nothing is downloaded.  Every failure is a `TileError` that names the file (and the tensor, or
the JSON line and column).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..diagnostics import SourceLoc, TileError

WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`; a missing file or a syntax error is a located TileError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TileError(f"{what} not found: {path}", hint="a Hugging Face model folder holds it") from None
    except OSError as e:
        raise TileError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        line = text.splitlines()[e.lineno - 1] if 0 < e.lineno <= len(text.splitlines()) else ""
        raise TileError(f"malformed JSON in {what}: {e.msg}", SourceLoc(str(path), e.lineno, e.colno, line),
                        hint="fix the file, or save it again with transformers") from None
    if not isinstance(data, dict):
        raise TileError(f"{path}: {what} must hold a JSON object, got {type(data).__name__}")
    return data


class Checkpoint:
    """The tensors of a model folder, by name, read lazily from the files that hold them."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise TileError(f"model folder not found: {self.folder}",
                            hint="give a local folder saved by transformers (save_pretrained), or --model NAME "
                                 "for a built-in configuration with random weights")
        self.config = read_json(self.folder / "config.json", "config.json")
        self._open: dict[Path, object] = {}
        self.files = self._index()  # tensor name -> file

    def _index(self) -> dict[str, Path]:
        for name in WEIGHT_FILES:
            path = self.folder / name
            if not path.exists():
                continue
            if name.endswith(".index.json"):
                data = read_json(path, name)
                wmap = data.get("weight_map")
                if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
                    raise TileError(f"{path}: 'weight_map' must map tensor names to shard files")
                for shard in sorted(set(wmap.values())):
                    if not (self.folder / shard).exists():
                        raise TileError(f"{path} names shard '{shard}', which is missing from {self.folder}",
                                        hint="copy every shard the index lists")
                return {k: self.folder / v for k, v in wmap.items()}
            return {k: path for k in self._keys(path)}
        raise TileError(f"no weights in {self.folder}", hint="expected one of: " + ", ".join(WEIGHT_FILES))

    def _keys(self, path: Path) -> list[str]:
        return list(self._file(path).keys())

    def _file(self, path: Path):
        """An open safetensors file, or the dict of a torch pickle loaded with weights_only=True."""
        if path not in self._open:
            if path.suffix == ".safetensors":
                from safetensors import SafetensorError, safe_open
                try:
                    self._open[path] = safe_open(str(path), framework="pt")
                except (SafetensorError, OSError) as e:
                    raise TileError(f"cannot read safetensors file {path}: {e}",
                                    hint="the file is damaged or not safetensors; save the model again") from None
            else:
                try:
                    data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except Exception as e:  # noqa: BLE001 - any unpickling failure: name the file
                    raise TileError(f"cannot read torch checkpoint {path}: {type(e).__name__}: {e}",
                                    hint="the file is damaged, or holds more than tensors (weights_only=True "
                                         "refuses code); save the model again, ideally as safetensors") from None
                if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
                    raise TileError(f"{path} does not hold a dict of tensors")
                self._open[path] = data
        return self._open[path]

    def names(self) -> set[str]:
        return set(self.files)

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor `name` on the CPU, as stored."""
        if name not in self.files:
            where = ", ".join(sorted({p.name for p in self.files.values()})) or "no file"
            raise TileError(f"checkpoint {self.folder} has no tensor '{name}' (looked in {where})",
                            hint="the files do not match config.json's architecture, or a shard is incomplete")
        f = self._file(self.files[name])
        if isinstance(f, dict):
            return f[name]
        try:
            return f.get_tensor(name)
        except Exception as e:  # noqa: BLE001 - safetensors reports truncation and bad offsets its own way
            raise TileError(f"cannot read tensor '{name}' from {self.files[name]}: {e}",
                            hint="the file is damaged; save the model again") from None

    def where(self, name: str) -> str:
        """'<file>: tensor <name>' for error messages."""
        return f"{self.files.get(name, self.folder)}: tensor '{name}'"

    def checked(self, name: str, shape: tuple[int, ...], meaning: str = "") -> torch.Tensor:
        """`tensor(name)`, refused unless it is a float tensor of exactly `shape`."""
        t = self.tensor(name)
        if t.dtype not in FLOAT_DTYPES:
            raise TileError(f"{self.where(name)} has dtype {str(t.dtype).replace('torch.', '')}, expected a float "
                            "(float32, float16 or bfloat16)", hint="this is not a weight tensor of this model")
        if tuple(t.shape) != tuple(shape):
            raise TileError(f"{self.where(name)} has shape {list(t.shape)}, expected {list(shape)}"
                            + (f" ({meaning})" if meaning else ""),
                            hint="the weights do not match config.json")
        return t
