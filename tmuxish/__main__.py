from __future__ import annotations

from tmuxish.cli import entry

entry()
