"""The WSGI entry point gunicorn serves: ``lsbackend.wsgi:app``."""

from .cli import build_app

app = build_app()
