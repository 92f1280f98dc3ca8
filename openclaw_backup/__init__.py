"""openclaw-backup: deduplicated, encrypted snapshots of an AI agent's home.

Layers (dependencies point down): ``cli``/``supervisor``/``settings`` (edges) → ``archiver``,
``restorer``, ``maintenance``, ``legacy`` (operations) → ``repository`` → ``chunker``, ``crypto``,
``codec``, ``tree``, ``sources`` (core) → ``backends`` (storage).
"""

__version__ = "0.1.0"
