"""The commands, one module per group: each ``register(sub)`` adds its subcommands to the
parser, with their handler as the ``handler`` default. ``cli.main.COMMANDS`` lists them in the
order ``corral --help`` shows them."""
