"""``corral up --target kubernetes``: the Kubernetes exporter's objects applied to a cluster
by server-side apply (``apply``), waited on in dependency order (``wait``), shown by ``ps``
(``status``), their pods' logs copied into the log store (``logs``); ``cluster`` holds the
client, the kubeconfig and the one-line errors. See docs/target-kubernetes.md."""
