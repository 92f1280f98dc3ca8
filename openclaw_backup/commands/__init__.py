"""The commands behind the CLI, one module per group; :mod:`..cli` imports a group only to run one of it.

A command is a function ``(args, settings, reporter) -> Result`` (:mod:`._common`): it builds typed
options from the parsed arguments and :class:`~..settings.Settings`, runs one operation and returns
(JSON document, text, exit code). It neither prints nor exits, and reads no environment variable:
:mod:`..cli` prints and exits, :mod:`..settings` reads the environment.

- :mod:`._common`: the result type, opening the repository, the file cache, sizes and counts;
- :mod:`.backup`: ``backup`` and ``backup --dry-run``;
- :mod:`.restore`: ``restore``;
- :mod:`.repo`: ``init``, ``key``, ``snapshots``, ``ls``, ``diff``;
- :mod:`.maintain`: ``check``, ``stats``, ``forget``, ``prune``, ``repair``;
- :mod:`.run`: a Space's backup service: ``run``, ``status``, ``migrate``, ``legacy-env``;
- :mod:`.guide`: ``excludes``, ``demo``.
"""
