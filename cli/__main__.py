"""`python -m cli` runs `ocr-deploy`."""

import sys

from cli.app import main

sys.exit(main())
