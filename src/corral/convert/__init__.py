"""Converting a fleet to and from other tools' files (M7): ``corral import compose|procfile``
writes a ``corral.yaml``; ``corral export FORMAT`` writes compose, Kubernetes, systemd or make
files. Every conversion lists what it could not carry (``report``): nothing is dropped
silently. Exporters are plug-ins (``registry``, the ``corral.exporters`` entry-point group)."""
