import sys

from omen.cli import main

sys.exit(main())
