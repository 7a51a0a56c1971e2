"""The tests, as packages that mirror the code: tests/runtime/config/ holds runtime/config/'s, tests/model/ model/'s.
tests/multidevice/ holds the slow checks that need several devices or processes (every mode on every mesh, the
pipeline schedules, training end to end across meshes, two-process meshes, cluster launchers).

Packages, so that tests/model and tests/runtime never shadow the model and runtime packages on sys.path, and so that a
test module imports another's fixtures by its full name (tests.multidevice.test_train)."""
