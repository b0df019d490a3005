"""``python -m advlab`` is the ``advlab`` command (torchrun-friendly)."""

from advlab.cli.main import main

raise SystemExit(main())
