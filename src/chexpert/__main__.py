import sys

from chexpert.cli import main

sys.exit(main())
