"""Text <-> token ids: a folder's `tokenizer.json` through the `tokenizers` library, or a byte-level
stand-in for the built-in random-weight models; and the defaults of `generation_config.json`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..diagnostics import TileError
from .checkpoint import read_json


class Tokenizer:
    """A Hugging Face fast tokenizer read from `tokenizer.json`."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as HFTokenizer
        read_json(path, "tokenizer.json")  # a located error for malformed JSON before tokenizers' own
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - tokenizers raises bare Exceptions
            raise TileError(f"cannot read tokenizer {path}: {e}",
                            hint="save it again with transformers or tokenizers") from None
        self.path = path

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with the special tokens the tokenizer adds itself (e.g. Llama's BOS)."""
        return self._tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)


class ByteTokenizer:
    """UTF-8 bytes as token ids, for models with random weights and no tokenizer.json: ids past 255
    (the rest of a real vocabulary) print as <id>."""
    path = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        out, run = [], bytearray()
        for i in ids:
            if 0 <= i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            out.append(f"<{i}>")
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)


def load_tokenizer(folder: Path, required: bool = True):
    path = folder / "tokenizer.json"
    if path.exists():
        return Tokenizer(path)
    if required:
        raise TileError(f"no tokenizer.json in {folder}",
                        hint="copy the model's tokenizer.json there (transformers' save_pretrained of its tokenizer "
                             "writes it), or pass token ids instead of text")
    return None


class TextStream:
    """Prints generated text as tokens arrive: each new token's text is the difference between the decoded
    sequence before and after it, held back while it ends in an incomplete UTF-8 character."""

    def __init__(self, tokenizer, out):
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.shown = ""

    def __call__(self, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self.out.write(text[len(self.shown):])
        self.out.flush()
        self.shown = text


@dataclass(frozen=True)
class GenerationDefaults:
    """What `generation_config.json` (else config.json) says about stopping and sampling."""
    eos_token_ids: tuple[int, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int | None = None


def generation_defaults(folder: Path | None, config_eos: tuple[int, ...]) -> GenerationDefaults:
    path = None if folder is None else folder / "generation_config.json"
    if path is None or not path.exists():
        return GenerationDefaults(eos_token_ids=config_eos)
    g = read_json(path, "generation_config.json")

    def number(key, kind, default):
        v = g.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise TileError(f"{path}: '{key}' is {v!r}, expected {'an integer' if kind is int else 'a number'}")
        return kind(v)

    eos = g.get("eos_token_id")
    eos = () if eos is None else tuple(eos) if isinstance(eos, list) else (eos,)
    if not all(isinstance(e, int) and not isinstance(e, bool) for e in eos):
        raise TileError(f"{path}: 'eos_token_id' is {g.get('eos_token_id')!r}, expected a token id or a list of them")
    return GenerationDefaults(eos or config_eos, bool(g.get("do_sample", False)), number("temperature", float, 1.0),
                              number("top_k", int, 0), number("top_p", float, 1.0),
                              number("max_new_tokens", int, None))
