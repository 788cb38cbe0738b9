"""The backend's C++ templates (`templates/*.j2`, package data): code shapes, the kernel frame, the
prelude of helpers and the emulator headers."""
from __future__ import annotations

import os
from functools import lru_cache

import jinja2


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    here = os.path.join(os.path.dirname(__file__), "templates")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(here), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def verbatim(name: str) -> str:
    """A C++ file kept as a template (templates/*.j2 are the package data) but emitted as it is."""
    return templates().get_template(name).render()
