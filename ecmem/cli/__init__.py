"""The ``ecmem`` command line."""
