from __future__ import annotations

import sys

from tmuxish.cli import main

sys.exit(main())
