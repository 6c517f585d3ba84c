"""`python -m weakalign.study`: the study's command line (weakalign.study.cli)."""

from .cli import main

raise SystemExit(main())
