"""What the tests share; imported one way only, ``from tests.support.<module> import …``.

=====================  ========================================================================
module                 owns
=====================  ========================================================================
``trees``              writing file trees (sample homes, versioned trees, edits) and describing
                       them for equality (``fingerprint``, ``tar_fingerprint``, ``digest``)
``repos``              the test password, cheap keys, small packs; repositories, backups and
                       restores in process; what a store holds; stored forms built by hand
``cli``                the real command line in a subprocess: environments, runners, JSON output
``processes``          stopping the processes tests start, their logs, free ports
``backends``           the kinds of store and the in-process backend fixtures (plugin)
``s3``                 SeaweedFS on loopback and the ``s3_*`` fixtures (plugin)
``hub``                the fake Hub's handle and the ``hub_*`` fixtures, the in-memory bucket
                       API (plugin); the server itself is ``hubserver``
``faults``             fault-injecting backend wrappers, ``verify_store``, the scenario ledger
                       (plugin)
``crash_driver``       the subprocess side of the crash and concurrency tests
``legacy``             legacy repositories built with the real tar/gzip/split/openssl
``dropin``             the legacy restore flags in /tmp, under a lock
``nodejs``             node and npm from the pinned wheel
``setup_openclaw``     installing the pinned OpenClaw (``python -m tests.support.setup_openclaw``)
``openclaw``           the real OpenClaw in a scratch home
``model_stub``         a stub OpenAI-compatible model server
=====================  ========================================================================

Nothing here is imported on package import (the crash driver's subprocess stays cheap).
"""
