"""How corral talks to a container engine: ``base.Ops`` and its two transports, ``api`` and
``cli``, chosen by ``auto``."""
