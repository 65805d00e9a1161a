"""One adapter per tool; ALL maps the --tools names to the classes."""

from tools.base import Fleet, Inst, Tool
from tools.baseline import Baseline
from tools.circus import Circus
from tools.corral import Corral
from tools.honcho import Honcho
from tools.pm2 import PM2
from tools.supervisord import Supervisord

ALL: dict[str, type[Tool]] = {
    t.name: t for t in (Baseline, Corral, Supervisord, Circus, Honcho, PM2)
}

__all__ = ["ALL", "Fleet", "Inst", "Tool"]
