import sys

if sys.argv[1:2] == ["start"]:  # gunicorn replaces this process at once: load nothing else (see start.py)
    from .start import main as start

    raise SystemExit(start(sys.argv[2:]))

from .cli import main

raise SystemExit(main())
