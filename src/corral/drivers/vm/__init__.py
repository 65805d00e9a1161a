"""The ``vm`` isolation level: ``driver.VmDriver`` runs each agent in a QEMU guest.

``guest`` assembles and caches the guest (``kernel``, ``initramfs``, the ``init`` script),
``rootfs`` the shared Debian root with Python, ``qemu`` builds the command line and talks QMP,
``job`` writes what the guest runs, ``console`` reads what it reports. The package face stays
empty, so importing one part does not import the driver.
"""
