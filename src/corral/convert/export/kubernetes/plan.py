"""What every part of the Kubernetes export reads: the manifest, the options, the report, the
agents' names, the ``--set`` settings (checked once: an unknown key is a usage error, not a
silent no-op), and what the parts decide that another needs (an agent's Service)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.convert.base import ExportOptions
from corral.convert.export.kubernetes.names import Names
from corral.convert.report import Report
from corral.errors import UsageError

if TYPE_CHECKING:
    from corral.manifest.spec import Agent, Manifest

Obj = dict[str, Any]

# the images of the init containers that wait for dependencies (README: "Images")
WAIT_IMAGE = "docker.io/library/busybox:1.36"
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.32.4"

SETTINGS = {
    "registry": "where built images are pushed (HOST/PATH); their refs name it",
    "base": "the base image of generated builds",
    "kustomize": "true (default) or false: write kustomization.yaml",
    "volume_size": "the storage a named volume's PVC requests (default 1Gi)",
    "storage_class": "the storageClassName of the PVCs (default: the cluster's)",
    "host_paths": "emptyDir (default) or hostPath: what a host-path volume becomes",
    "wait_image": f"the image of the init containers that wait on a Service ({WAIT_IMAGE})",
    "kubectl_image": f"the image of the init containers that wait on a Job ({KUBECTL_IMAGE})",
}
CHOICES = {"kustomize": ("true", "false"), "host_paths": ("emptyDir", "hostPath")}


def checked_settings(given: dict[str, str]) -> dict[str, str]:
    for key, value in given.items():
        if key not in SETTINGS:
            from corral.manifest.hints import did_you_mean

            raise UsageError(f"--set {key}: not a kubernetes setting{did_you_mean(key, SETTINGS)}",
                             f"use one of {', '.join(sorted(SETTINGS))}")
        if key in CHOICES and value not in CHOICES[key]:
            raise UsageError(f"--set {key}={value}: not one of {', '.join(CHOICES[key])}",
                             f"write --set {key}={CHOICES[key][0]}")
        if not value:
            raise UsageError(f"--set {key}= is empty", f"write --set {key}=VALUE "
                             f"({SETTINGS[key]})")
    return dict(given)


@dataclass(slots=True)
class Plan:
    manifest: Manifest
    options: ExportOptions
    report: Report
    names: Names
    settings: dict[str, str]
    # agent -> (Service name, ports) for the agents that have one
    services: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    # each agent's network mode, and (agent, variable, Service, port) of those with a port
    modes: dict[str, str] = field(default_factory=dict)
    peers: list[tuple[str, str, str, int]] = field(default_factory=list)
    # agents whose pods wait on Jobs or pods through the API (the waiter ServiceAccount)
    waiters: set[str] = field(default_factory=set)
    # what the README lists: images to build, secrets to create
    builds: list[tuple[str, str, str]] = field(default_factory=list)  # agent, ref, context
    # files of the bundle besides the objects (generated Containerfiles)
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest, options: ExportOptions, report: Report) -> Plan:
        settings = checked_settings(options.settings)
        names = Names.of(manifest.name, list(manifest.agents), report)
        return cls(manifest, options, report, names, settings)

    @property
    def namespace(self) -> str | None:
        return self.options.namespace

    def agent(self, name: str) -> Agent:
        return self.manifest.agents[name]

    def setting(self, key: str, default: str) -> str:
        return self.settings.get(key, default)

    def waiter_account(self) -> str:
        from corral.convert.export.kubernetes.names import dns_label

        return dns_label(f"{self.manifest.name}-corral-wait")
