"""Who may do what on the sandbox API server: bearer tokens and the z2jh hub Role.

A bearer token maps to an identity: "admin" may do anything; "hub" is the ServiceAccount
``system:serviceaccount:<hub_namespace>:hub``, bound to the Zero-to-JupyterHub hub Role in its
namespace plus any extra cluster-wide rules (unless the role is not enforced); any other
identity may do nothing. A refusal is a 401 Unauthorized or a 403 Forbidden worded like
Kubernetes' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from .resources import ApiError, Obj, Target

# The hub Role of Zero-to-JupyterHub 4.4.0 (templates/hub/rbac.yaml).
HUB_ROLE_RULES: list[Obj] = [
    {
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"resources": ["events"], "verbs": ["get", "watch", "list"]},
]

IDENTITY = web.RequestKey("identity", str)


class Rbac:
    """Authentication by bearer token and authorization by the rules bound to an identity."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        hub_namespace: str,
        enforce_hub_role: bool,
        hub_cluster_rules: Sequence[Mapping[str, Sequence[str]]],
    ) -> None:
        self.tokens = dict(tokens)
        self.hub_namespace = hub_namespace
        self.enforce_hub_role = enforce_hub_role
        self.hub_cluster_rules = [dict(r) for r in hub_cluster_rules]

    def authenticate(self, request: web.Request) -> None:
        """Note the request's identity in request[IDENTITY], or answer 401."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        identity = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if identity is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        request[IDENTITY] = identity

    def user(self, identity: str) -> str:
        if identity == "hub":
            return f"system:serviceaccount:{self.hub_namespace}:hub"
        return identity

    def authorize(self, identity: str, verb: str, target: Target) -> None:
        """Return if `identity` may `verb` the target, else answer 403."""
        if identity == "admin" or (identity == "hub" and not self.enforce_hub_role):
            return
        resource = f"{target.plural}/{target.subresource}" if target.subresource else target.plural
        if identity == "hub":
            rules = list(self.hub_cluster_rules)
            if target.namespace == self.hub_namespace and target.namespaced:
                rules += HUB_ROLE_RULES
            for rule in rules:
                resources, verbs = rule.get("resources", ()), rule.get("verbs", ())
                if (resource in resources or "*" in resources) and (verb in verbs or "*" in verbs):
                    return
        what = f'{target.plural} "{target.name}"' if target.name else target.plural
        scope = (
            f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
        )
        message = (
            f'{what} is forbidden: User "{self.user(identity)}" cannot {verb} resource '
            f'"{resource}" in API group "" {scope}'
        )
        details: Obj = {"kind": target.plural}
        if target.name:
            details["name"] = target.name
        raise ApiError(403, "Forbidden", message, details)
