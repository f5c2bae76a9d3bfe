"""Entry point of ``python -m hpo``: a sweep's trial libraries start loading before the driver's imports."""

import sys

from hpo.driver.early_start import start_for_sweep

start_for_sweep(sys.argv[1:])

from hpo.driver.cli import main  # noqa: E402

raise SystemExit(main())
