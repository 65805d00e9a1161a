import sys

from corral.logs.forward.worker import main

sys.exit(main(sys.argv[1:]))
