"""
The Lua scripts of the shared state, read from ``lua/`` next to this module.

Each script is the common prelude (``lua/_prelude.lua``: the calling convention, the format
check and the clock) followed by its own body, and is called by its SHA1 (``EVALSHA``). A
server that has forgotten it (a restart, ``SCRIPT FLUSH``) answers ``NOSCRIPT``: the sync
actor then loads every script and runs what failed again; a server that keeps forgetting gets
the scripts' text (``EVAL``) for the rest of the connection.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Final, final

import attrs

__all__ = ("SCRIPTS", "Script")


@final
@attrs.frozen
class Script:
    """One Lua script: its name, full text (prelude included) and SHA1."""

    name: str
    text: str
    sha: str


def _load() -> dict[str, Script]:
    folder = resources.files(__package__).joinpath("lua")
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in ("heartbeat", "dependency", "lease", "pause", "control"):
        text = prelude + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = Script(name, text, hashlib.sha1(text.encode()).hexdigest())
    return scripts


#: name -> script
SCRIPTS: Final = _load()
