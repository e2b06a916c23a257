"""``python -m bcdv.emulators ...``: same as ``bcdv emulators ...``."""
import sys

from bcdv.emulators.cli import main

if __name__ == "__main__":
    sys.exit(main())
