"""The bundle's files: the objects as YAML under ``manifests/`` (numbered, so ``kubectl apply
-f manifests/`` applies them in order: the fleet's objects, then each agent after its
dependencies), a ``kustomization.yaml`` that lists them (``kubectl apply -k .``), the
generated Containerfiles under ``build/``, and a README of what to do before applying: the
images to build and push, the Secrets to create, the images the init containers use."""

from __future__ import annotations

import shlex
from json.encoder import encode_basestring as quoted

import yaml

from corral.convert.base import Bundle
from corral.convert.export.kubernetes import config
from corral.convert.export.kubernetes.plan import KUBECTL_IMAGE, WAIT_IMAGE, Obj, Plan

_Base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Dumper(_Base):  # type: ignore[misc, valid-type]
    """libyaml's dumper, without anchors: objects share sub-dicts, readers want them whole."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump(objs: list[Obj]) -> str:
    return "---\n".join(_one(o) for o in objs)


def _one(obj: Obj) -> str:
    """One object. A ConfigMap's data (every peer's address: n entries in each of n agents'
    maps) is written line by line as JSON strings, which are YAML's double-quoted scalars:
    the representer would take seconds for a 500-agent fleet."""
    data = obj.get("data") if obj.get("kind") == "ConfigMap" else None
    head = {k: v for k, v in obj.items() if k != "data"} if data else obj
    text = yaml.dump(head, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                     width=100)
    if data:
        # keys are ConfigMap keys ([-._a-zA-Z0-9]+): quoted as they are
        text += "data:\n" + "".join(f'  "{k}": {quoted(v)}\n' for k, v in data.items())
    return text


def make(plan: Plan, fleet: list[Obj], agents: dict[str, list[Obj]]) -> Bundle:
    files: dict[str, str] = {}
    width = max(2, len(str(len(agents))))
    order: list[str] = []
    if fleet:
        path = f"manifests/{'0' * width}-fleet.yaml"
        files[path] = dump(fleet)
        order.append(path)
    for n, (name, objs) in enumerate(agents.items(), 1):
        path = f"manifests/{n:0{width}d}-{plan.names.of_agent(name)}.yaml"
        files[path] = dump(objs)
        order.append(path)
    if plan.setting("kustomize", "true") == "true":
        kustomization: Obj = {"apiVersion": "kustomize.config.k8s.io/v1beta1",
                              "kind": "Kustomization"}
        if plan.namespace:
            kustomization["namespace"] = plan.namespace
        kustomization["resources"] = order
        files["kustomization.yaml"] = yaml.dump(kustomization, Dumper=Dumper, sort_keys=False)
    files.update(plan.files)
    files["README.md"] = readme(plan, kustomize="kustomization.yaml" in files)
    return Bundle(plan.report, files=files, stream=order)  # --out -: | kubectl apply -f -


def readme(plan: Plan, *, kustomize: bool) -> str:
    m = plan.manifest
    ns = f" --namespace {plan.namespace}" if plan.namespace else ""
    lines = [f"# {m.name}: exported by corral for Kubernetes", "",
             "What corral could not carry exactly is in the export's report (`corral export "
             "kubernetes --report json`).", "", "## Apply", ""]
    if plan.namespace:
        lines += [f"The objects are made for the namespace `{plan.namespace}` "
                  f"(`kubectl create namespace {plan.namespace}` first).", ""]
    lines += ["```sh", f"kubectl apply{ns} -f manifests/    # in order: the files are numbered"]
    if kustomize:
        lines.append(f"kubectl apply{ns} -k .              # or as a kustomization")
    lines += ["```", "", "Or `corral up --target kubernetes`, which applies the same objects "
              "with server-side apply and prunes what it applied before.", ""]
    if plan.builds:
        lines += ["## Images to build and push", "",
                  "These agents run images built from their directories (a generated "
                  "Containerfile is under `build/AGENT/`). Build and push each where the "
                  "cluster pulls from (`--set registry=HOST/PATH` names it in the refs):", "",
                  "```sh"]
        for agent, ref, context in plan.builds:
            own = f"build/{agent}/Containerfile"
            file = f" -f {own}" if own in plan.files else ""
            lines += [f"podman build -t {ref}{file} {shlex.quote(context)}",
                      f"podman push {ref}"]
        lines += ["```", ""]
    names = config.secret_names(plan)
    wanted = [s for s in m.secrets if any(u.source == s for a in m.agents.values()
                                          for u in a.secrets)]
    if wanted and not plan.options.include_secrets:
        lines += ["## Secrets to create", "",
                  "The pods refer to these Secrets (key `value`); their values are not in "
                  "the export. Create each from the source the manifest names:", "", "```sh",
                  *config.create_commands(plan, names, wanted), "```", ""]
    elif wanted:
        lines += ["## Secrets", "", "`--include-secrets`: the Secrets in "
                  "manifests/ hold the values: keep this directory out of version control.",
                  ""]
    if any(a.depends_on for a in m.agents.values()):
        lines += ["## Images the init containers use", "",
                  "An agent that depends on another waits for it in init containers:",
                  f"- `{plan.setting('wait_image', WAIT_IMAGE)}` (`--set wait_image=`): "
                  "`nc -z` on the dependency's Service until a Ready pod answers;",
                  f"- `{plan.setting('kubectl_image', KUBECTL_IMAGE)}` (`--set "
                  "kubectl_image=`): `kubectl rollout status` / `kubectl wait "
                  "--for=condition=complete` on a dependency without a Service or a Job, as "
                  f"the ServiceAccount `{plan.waiter_account()}` (a Role that reads "
                  "Deployments and Jobs). The Job must exist when its dependents start: apply "
                  "in the files' order.", ""]
    lines += ["## Network rules", "",
              "`network: none` and `loopback:NAME` are NetworkPolicies: they hold only where "
              "the cluster's network plugin enforces NetworkPolicies.", ""]
    return "\n".join(lines)
