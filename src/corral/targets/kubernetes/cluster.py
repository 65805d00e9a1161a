"""The connection to a cluster: the kubeconfig (``$KUBECONFIG``, else ``~/.kube/config``) and
its context read by the official client, one ``ApiClient``, and every failure as one line
that names the fix (no kubeconfig, an unknown context, an API server that does not answer,
401/403, a field another manager owns)."""

from __future__ import annotations

import json
import os
from typing import Any

from corral.errors import CorralError, UsageError

APPLY = "application/apply-patch+yaml"  # server-side apply (JSON is YAML)
MANAGER = "corral"
TIMEOUT = (5.0, 60.0)  # connect, read


def kubeconfig_path() -> str:
    """The first file of ``$KUBECONFIG`` (as kubectl merges them, the client reads the list),
    or ``~/.kube/config``; a one-line error when none exists."""
    listed = os.environ.get("KUBECONFIG", "")
    paths = [p for p in listed.split(os.pathsep) if p] or [os.path.expanduser("~/.kube/config")]
    if not any(os.path.isfile(p) for p in paths):
        raise UsageError(f"no kubeconfig at {':'.join(paths)}",
                         "set KUBECONFIG to your cluster's kubeconfig (or write ~/.kube/config)")
    return os.pathsep.join(paths)


class Cluster:
    """One context of the kubeconfig and the namespace the fleet goes to (``--namespace``,
    else the context's, else ``default``)."""

    def __init__(self, context: str | None = None, namespace: str | None = None) -> None:
        from kubernetes import config
        from kubernetes.client import ApiClient, Configuration
        from kubernetes.config.config_exception import ConfigException

        path = kubeconfig_path()
        try:
            listing = config.list_kube_config_contexts  # untyped in the client
            contexts, current = listing(path)
        except (ConfigException, OSError, ValueError) as exc:
            raise UsageError(f"the kubeconfig {path} does not read: {exc}",
                             "fix it or point KUBECONFIG at another") from None
        names = [c["name"] for c in contexts or []]
        if context is not None and context not in names:
            from corral.manifest.hints import did_you_mean

            raise UsageError(f"no context {context!r} in {path}{did_you_mean(context, names)}",
                             f"use one of {', '.join(names) or '(none)'}")
        chosen = next((c for c in contexts or [] if c["name"] == context), current)
        if chosen is None:
            raise UsageError(f"{path} names no current context", "pass --context NAME")
        self.context: str = chosen["name"]
        self.namespace: str = namespace or chosen.get("context", {}).get("namespace") or "default"
        configuration = Configuration()
        try:
            config.load_kube_config(
                config_file=path, context=self.context, client_configuration=configuration,
                persist_config=False)
        except (ConfigException, OSError, ValueError) as exc:
            raise UsageError(f"context {self.context!r} of {path} does not load: {exc}",
                             "fix its cluster and user entries") from None
        configuration.retries = 1  # a refused connection is reported, not retried for long
        self.server: str = configuration.host
        self.api = ApiClient(configuration)

    def call(self, method: str, path: str, query: list[tuple[str, Any]] | None = None,
             body: Any = None, content_type: str = "application/json", *,
             raw: bool = False, read_timeout: float | None = None) -> Any:
        """One API request: the decoded JSON answer (``raw``: the response, to stream)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        headers = {"Content-Type": content_type,
                   "Accept": "*/*" if raw else "application/json"}
        timeout = (TIMEOUT[0], read_timeout) if read_timeout else TIMEOUT
        try:
            if not hasattr(self.api, "param_serialize"):
                # the client below 37 (kept there: 37 wants python-dateutil>=3, botocore
                # <3): one call, urllib3's response, ApiException past 2xx
                old = self.api.call_api(path, method, query_params=query or [],
                                        header_params=headers, body=body,
                                        auth_settings=["BearerToken"], _preload_content=False,
                                        _return_http_data_only=True, _request_timeout=timeout)
                if raw:
                    return old
                data = old.data
                return json.loads(data) if data else {}
            request = self.api.param_serialize(method, path, query_params=query or [],
                                               header_params=headers, body=body,
                                               auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=timeout)
            if raw and 200 <= response.status < 300:
                return response.response
            response.read()
            if not 200 <= response.status < 300:
                raise ApiException(http_resp=response)
        except urllib3.exceptions.HTTPError as exc:
            raise CorralError(f"the API server of context {self.context!r} ({self.server}) "
                              f"does not answer: {type(exc).__name__}",
                              "check the cluster is up and reachable (kubectl cluster-info)"
                              ) from None
        except ApiException as exc:
            raise self.error(exc, method, path) from None
        return json.loads(response.data) if response.data else {}

    def error(self, exc: Any, method: str, path: str) -> CorralError:
        status, message = exc.status, _message(exc)
        if status in (401, 403):
            return CorralError(f"the API server refused {method} {path} ({status} "
                               f"{exc.reason}): {message}", "give the context's user the "
                               f"RBAC rights on namespace {self.namespace!r}, or use another "
                               "--context")
        if status == 409 and "conflict" in message.lower():
            return CorralError(f"{message} (another field manager owns these fields)",
                               "pass --force-conflicts to take them over for corral")
        return CorralError(f"{method} {path}: {status} {exc.reason}: {message}",
                           "see the message; 'corral export kubernetes' shows the objects")


def _message(exc: Any) -> str:
    try:
        text = json.loads(exc.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        text = ""
    return " ".join(str(text or exc.body or "").split())[:300]
