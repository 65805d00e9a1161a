"""A Kubernetes API server stand-in for the ``--target kubernetes`` tests: kmock's
``KubernetesEmulator`` served by ``kmock.Server`` (aiohttp) on a real TCP port, in its own
process (``python tests/support/kube_fake.py`` prints ``PORT`` and serves until killed), so the
official client makes real HTTP requests. No real API server can run on these machines.

What it adds to kmock, as the API server does it (https://kubernetes.io/docs/reference/
using-api/server-side-apply/): server-side apply (PATCH ``application/apply-patch+yaml``
creates or updates, needs ``fieldManager``; a field owned by another manager with another
value is a 409 Conflict unless ``force=true``), merge patches that give a manager its
fields, ``labelSelector`` on lists, 403 for the token ``forbidden``, ``pods/NAME/log`` with
``timestamps`` and ``sinceTime``, and a toy controller: a Deployment's pods run and are
ready, a Job's pod succeeds (in both, an image named ``*never-ready*`` stays in
ImagePullBackOff; a suspended Job has no pod). For kubectl: discovery (kmock's, of the kinds
it bundles; open to every token, as ``system:discovery`` is), any namespace exists, each
change is a ``resourceVersion``, and watches (``?watch=true``: from a ``resourceVersion`` on,
or the objects as they are and then what changes; ``fieldSelector`` on the name). kubectl
sends a token only to an https server: ``--tls CERT KEY`` serves https.

``POST /fake/log/NS/POD`` appends a line to a pod's log (the tests' way to make output);
``GET /fake/requests`` lists the API requests served, in order."""

from __future__ import annotations

import asyncio
import calendar
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import kmock

_BASE = time.time()


def _stamp(ts: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int(ts % 1 * 1e9):09d}Z"


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {},
                                      "status": "Failure", "code": code, "reason": reason,
                                      "message": message}, status=code)


def _leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if prefix == "" and k in ("status", "apiVersion", "kind"):
                continue
            if prefix == ".metadata" and k in ("name", "namespace", "managedFields",
                                               "generation", "uid", "creationTimestamp"):
                continue
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: json.dumps(obj, sort_keys=True)}


def _picked(obj: dict[str, Any], params: Any) -> bool:
    """``labelSelector`` and ``fieldSelector`` of ``key=value`` terms (fields: the name)."""
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    fields = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    return all(have.get(k) == v for have, selector in ((labels, "labelSelector"),
                                                       (fields, "fieldSelector"))
               for k, v in (term.split("=", 1) for term in
                            filter(None, (params.get(selector) or "").split(","))))


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class FakeCluster(kmock.KubernetesEmulator):
    """Objects by (plural, namespace, name); each with the leaves each manager owns."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()  # discovery: kmock's, of the built-in kinds
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.owners: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        self.logs: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.seen: list[str] = []
        self.changes: list[tuple[str, str, dict[str, Any]]] = []  # plural, ns, event
        self.changed = asyncio.Event()  # set, and replaced, at each change

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        parts = path.strip("/").split("/")
        method = request.method.value
        discovery = request.resource is None or request.resource.plural is None
        if request.headers.get("Authorization", "") == "Bearer forbidden" and not (
                discovery and request.namespace is None and method == "GET"):
            return _status(403, "Forbidden", f'User "ci" cannot access {path}')
        if parts[:2] == ["fake", "log"] and method == "POST":
            self.logs.setdefault((parts[2], parts[3]), []).append((time.time(), request.text))
            return aiohttp.web.json_response({})
        if parts == ["fake", "requests"]:
            return aiohttp.web.json_response(self.seen)
        self.seen.append(f"{method} {request.url.path_qs}")
        if discovery:
            if request.namespace is not None and method == "GET":
                return aiohttp.web.json_response({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {
                        "name": request.namespace}, "status": {"phase": "Active"}})
            return await super()._handle(request)
        if "namespaces" not in parts:
            return _status(404, "NotFound", f"the server could not find {path}")
        i = parts.index("namespaces")
        ns, rest = parts[i + 1], parts[i + 2:]
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
        key = (plural, ns, name or "")
        if sub == ["log"]:
            return self._log(ns, name or "", request.params)
        if name is None and request.params.get("watch") in ("true", "1"):
            return await kmock.Response(headers={"Content-Type": "application/json"},
                                        payload=self._watch(plural, ns, request.params)
                                        )(request)
        if name is None and method == "GET":
            return aiohttp.web.json_response({
                "kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(len(self.changes))},
                "items": self._list(plural, ns, request.params)})
        if method == "GET":
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            return aiohttp.web.json_response(self.store[key])
        if method == "DELETE":
            if key not in self.store:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            gone = self._pop(key)
            self.owners.pop(key, None)
            if plural in ("deployments", "jobs"):
                for pod in [k for k in self.store if k[0] == "pods" and k[1] == ns
                            and self.store[k]["metadata"].get("ownerName") == name]:
                    self._pop(pod)
            return aiohttp.web.json_response(gone)
        if method == "PATCH":
            return self._patch(key, request)
        return _status(405, "MethodNotAllowed", f"{method} is not served here")

    def _patch(self, key: tuple[str, str, str], request: kmock.Request) -> aiohttp.web.Response:
        manager = request.params.get("fieldManager")
        apply = request.headers.get("Content-Type", "").startswith("application/apply-patch")
        body = request.data if isinstance(request.data, dict) else {}
        if apply and not manager:
            return _status(400, "BadRequest", "PATCH requests with apply patch type require "
                           "fieldManager to be set")
        if not apply and key not in self.store:
            return _status(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        owners = self.owners.setdefault(key, {})
        mine = _leaves(body)
        if apply:
            conflicts = sorted(f'conflict with "{who}": {leaf}'
                               for who, leaves in owners.items() if who != manager
                               for leaf, value in leaves.items()
                               if leaf in mine and mine[leaf] != value)
            if conflicts and request.params.get("force") != "true":
                return _status(409, "Conflict", f"Apply failed with {len(conflicts)} "
                               f"conflict{'s' if len(conflicts) > 1 else ''}: "
                               + ", ".join(conflicts))
            for who, leaves in owners.items():
                if who != manager:
                    for leaf in mine:
                        leaves.pop(leaf, None)
        old = self.store.get(key)
        obj = _merge(old or {}, body)
        meta = obj.setdefault("metadata", {})
        meta.update(name=key[2], namespace=key[1])
        spec_changed = old is None or old.get("spec") != obj.get("spec")
        meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + (
            1 if spec_changed else 0)
        owners[manager or "unknown"] = {**owners.get(manager or "unknown", {}), **mine} \
            if not apply else mine
        meta["managedFields"] = [{"manager": who, "operation": "Apply"} for who in owners]
        self._control(key, obj)
        self._put(key, obj)
        return aiohttp.web.json_response(obj)

    def _put(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        kind = "MODIFIED" if key in self.store else "ADDED"
        self.store[key] = obj
        self._change(key, kind, obj)

    def _pop(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.store.pop(key)
        self._change(key, "DELETED", obj)
        return obj

    def _change(self, key: tuple[str, str, str], kind: str, obj: dict[str, Any]) -> None:
        """A change is a resourceVersion (its place in ``changes``), then wakes the watches."""
        obj["metadata"]["resourceVersion"] = str(len(self.changes) + 1)
        self.changes.append((key[0], key[1], {"type": kind, "object": json.loads(
            json.dumps(obj))}))
        self.changed.set()
        self.changed = asyncio.Event()

    async def _watch(self, plural: str, ns: str, params: Any) -> AsyncIterator[Any]:
        """The events after ``resourceVersion`` (without one, or 0: the objects as they are,
        as ADDED), then each change as it comes, until ``timeoutSeconds``."""
        yield b""  # the headers go now: a client waits for them
        since = params.get("resourceVersion") or "0"
        done = len(self.changes) if since == "0" else int(since)
        if since == "0":
            for obj in self._list(plural, ns, params):
                yield {"type": "ADDED", "object": obj}
        deadline = time.monotonic() + float(params.get("timeoutSeconds") or 3600)
        while True:
            for p, n, event in self.changes[done:]:
                if p == plural and n == ns and _picked(event["object"], params):
                    yield event
            done = len(self.changes)
            try:
                await asyncio.wait_for(self.changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                return

    def _list(self, plural: str, ns: str, params: Any) -> list[dict[str, Any]]:
        return [obj for (p, n, _), obj in sorted(self.store.items())
                if p == plural and n == ns and _picked(obj, params)]

    def _control(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        """The toy controller: pods for a Deployment or Job, and their statuses."""
        plural, ns, name = key
        if plural not in ("deployments", "jobs"):
            return
        template = obj["spec"]["template"]
        containers = template["spec"]["containers"]
        stuck = any("never-ready" in c.get("image", "") for c in containers)
        suspended = plural == "jobs" and bool(obj["spec"].get("suspend"))
        count = obj["spec"].get("replicas", 1) if plural == "deployments" else int(
            not suspended)
        for old in [k for k in self.store if k[0] == "pods" and k[1] == ns
                    and self.store[k]["metadata"].get("ownerName") == name]:
            self._pop(old)
        for i in range(count):
            pod = f"{name}-{obj['metadata']['generation']}x{i}"
            state: dict[str, Any] = (
                {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
                if stuck else {"running": {}} if plural == "deployments" else
                {"terminated": {"exitCode": 0}})
            phase = "Pending" if stuck else "Running" if plural == "deployments" else "Succeeded"
            self._put(("pods", ns, pod), {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ns, "ownerName": name,
                             "labels": dict(template["metadata"].get("labels") or {})},
                "spec": {"nodeName": f"node-{i + 1}", "containers": containers},
                "status": {"phase": phase, "startTime": _stamp(_BASE).split(".")[0] + "Z",
                           "containerStatuses": [
                               {"name": c["name"], "ready": not stuck and plural ==
                                "deployments", "restartCount": 0, "state": state}
                               for c in containers]}})
            self.logs.setdefault((ns, pod), []).append(
                (_BASE + 0.25, f"{pod} started on node-{i + 1}"))
        if plural == "deployments":
            ok = 0 if stuck else count
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"],
                             "replicas": count, "updatedReplicas": count,
                             "readyReplicas": ok, "availableReplicas": ok}
        elif suspended:
            obj["status"] = {"conditions": [{"type": "Suspended", "status": "True"}]}
        else:
            obj["status"] = {"active": 1} if stuck else {"succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True"}]}

    def _log(self, ns: str, pod: str, params: Any) -> aiohttp.web.StreamResponse:
        if ("pods", ns, pod) not in self.store:
            return _status(404, "NotFound", f'pods "{pod}" not found')
        since = params.get("sinceTime")
        floor = calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ")) if since else 0.0
        lines = [(f"{_stamp(ts)} " if params.get("timestamps") == "true" else "") + text
                 for ts, text in self.logs.get((ns, pod), []) if ts >= floor]
        return aiohttp.web.Response(text="".join(f"{line}\n" for line in lines),
                                    content_type="text/plain")


class _TLSServer(aiohttp.test_utils.RawTestServer):
    def __init__(self, handler: Any, *, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._context = context

    async def start_server(self, **kwargs: Any) -> None:
        await super().start_server(ssl=self._context, **kwargs)


async def _serve(args: list[str]) -> None:
    handler = FakeCluster()
    options: dict[str, Any] = {}
    if args[:1] == ["--tls"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args[1], args[2])
        options["server_cls"] = lambda h, **kw: _TLSServer(h, context=context, **kw)
    async with handler, kmock.Server(handler, **options) as server:
        print(server.port, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(_serve(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(0)
