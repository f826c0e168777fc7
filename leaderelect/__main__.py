import sys

from leaderelect.cli import main

sys.exit(main())
