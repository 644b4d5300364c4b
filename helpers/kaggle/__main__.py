"""`python -m helpers.kaggle bundle ... | check ...` (see `helpers.kaggle.bundle`)."""
import sys

from helpers.kaggle.bundle import main

sys.exit(main())
