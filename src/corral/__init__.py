"""corral: run a whole fleet of heterogeneous agents from one declarative file.

This module stays import-light on purpose: the CLI's hot paths (``corral ps``) must start fast.
"""

__version__ = "0.1.0"
