"""openclaw-backup: deduplicated, encrypted snapshots of an AI agent's home.

Layers (dependencies point down): ``cli``/``commands``/``service``/``supervisor``/``settings``
(edges) → ``archiver``, ``restorer``, ``maintenance``, ``prune``, ``legacy`` (operations) →
``repository`` with its parts ``pack``, ``index``, ``keys``, ``repo_config`` (the only way into the
format) → ``snapshot``, ``chunker``, ``crypto``, ``codec``, ``tree``, ``sources`` (core) →
``backends`` (storage). Only the repository and its parts import ``codec``. Only ``settings`` reads
environment variables.
"""

__version__ = "0.1.0"
