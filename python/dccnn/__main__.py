"""``python -m dccnn``: the main job on the embedded default (scikit-learn's digits)."""

from .demo import main

raise SystemExit(main())
