"""The ``imd`` command-line tool: one argparse program with a module per subcommand."""
