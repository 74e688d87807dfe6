"""The ``istn-sk`` command line, a thin layer over the library objects."""
