"""``python -m bcdv_emulators ...``: same as ``bcdv emulators ...``."""
import sys

from bcdv_emulators.cli import main

if __name__ == "__main__":
    sys.exit(main())
