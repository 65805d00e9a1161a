"""The ``vm`` isolation level's parts below the driver (``corral.drivers.vm``).

``guest`` assembles and caches the guest (``kernel``, ``initramfs``, the ``init`` script),
``rootfs`` the shared Debian root with Python, ``qemu`` builds the command line and talks QMP,
``job`` writes what the guest runs, ``console`` reads what it reports.
"""
