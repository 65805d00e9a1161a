"""The ``container`` isolation level: ``driver.ContainerDriver`` over Podman or Docker.

``engine`` finds the engine and runs its CLI for what happens rarely (build, import, version);
``transport`` is how each container's life is driven (the REST API, else the CLI); ``service``
starts Podman's API; ``runargs`` turns a task into a run spec; ``follow`` reads logs with a byte
cursor; ``oom``, ``rootless``, ``image``, ``build`` and ``doctor`` are what their names say.
The package face stays empty, so importing one part does not import the driver.
"""
