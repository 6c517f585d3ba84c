"""`python -m weakalign.study`: the study's command line (weakalign.study.cli)."""

from weakalign.study.cli import main

raise SystemExit(main())
