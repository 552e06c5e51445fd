"""``python -m attnzoo`` runs the same command as the ``attnzoo`` script."""

import sys

from attnzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
