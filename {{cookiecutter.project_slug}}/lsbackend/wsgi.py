"""The WSGI entry point gunicorn serves: ``lsbackend.wsgi:app``."""

from .app import build_app, exit_on_startup_error

app = exit_on_startup_error(build_app)
