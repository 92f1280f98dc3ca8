"""``python -m openclaw_backup`` runs the command line."""

from .cli import entry

entry()
