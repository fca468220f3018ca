"""The ``flowlearn`` command line.  Subcommands call only the public API."""
