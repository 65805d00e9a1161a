"""The supervisor daemon: ``entry`` (``python -m corral.daemon``), ``serve`` (its life), ``log``
(its own log file). This package face stays empty: the daemon imports only what it needs."""
