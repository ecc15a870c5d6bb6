from __future__ import annotations

from tmuxish.quick import entry

entry()
