"""The test suite (a package, so every module has one name: ``tests.test_…``, ``tests.support.…``)."""
