"""``python -m corral.daemon --state-dir DIR``: what ``corral up`` starts."""

import sys

from corral.daemon.entry import main

sys.exit(main(sys.argv[1:]))
