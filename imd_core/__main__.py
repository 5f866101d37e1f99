import sys

from imd_core.cli.main import main

sys.exit(main())
