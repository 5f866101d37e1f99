import sys

from imd_app.main import main

sys.exit(main())
