"""Entry point of ``python -m hpo``."""

from hpo.driver.cli import main

raise SystemExit(main())
