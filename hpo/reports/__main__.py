"""Entry point of ``python -m hpo.reports``."""

from hpo.reports.cli import main

raise SystemExit(main())
