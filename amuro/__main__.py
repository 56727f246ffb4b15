import sys

from amuro.cli import main

sys.exit(main())
