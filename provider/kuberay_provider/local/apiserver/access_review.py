"""SelfSubjectAccessReview and SelfSubjectRulesReview (authorization.k8s.io/v1): ``kubectl auth can-i`` and
``kubectl auth can-i --list``.

Both are answered from what the request authorizer itself uses, ``rbac.Authorizer.decide`` and
``Authorizer.grants``, so "yes" means the same request would be let through and "no" that it would get
403. Reviews are not counted as usage (a ``can-i`` loop must not make unused grants look used).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .auth import user_of
from .discovery import AUTHORIZATION_GROUP
from .errors import Cause, bad_request, invalid, method_not_allowed
from .handlers import read_object
from .rbac import ADMIN_RULES, Attributes, Authorizer, User, aggregate
from .registry import ResourceType

API_VERSION = f"{AUTHORIZATION_GROUP}/v1"
ACCESS_REVIEW = "SelfSubjectAccessReview"
RULES_REVIEW = "SelfSubjectRulesReview"
EXACTLY_ONE = "exactly one of nonResourceAttributes or resourceAttributes must be specified"


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise bad_request(f"{field}: must be an object")
    return value


def _metadata(review: Mapping[str, Any]) -> dict[str, Any]:
    return {"creationTimestamp": None, **_mapping(review.get("metadata"), "metadata")}


def requested_attributes(spec: Mapping[str, Any]) -> Attributes:
    """authorizationutil.ResourceAttributesFrom / NonResourceAttributesFrom; 422 unless exactly one is set."""
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        cause = (
            Cause(
                "spec.nonResourceAttributes",
                "Invalid value: cannot be specified in combination with resourceAttributes",
            )
            if resource is not None
            else Cause("spec.resourceAttributes", f'Invalid value: "null": {EXACTLY_ONE}')
        )
        raise invalid(ACCESS_REVIEW, AUTHORIZATION_GROUP, "", [cause])
    if resource is not None:
        asked = _mapping(resource, "spec.resourceAttributes")
        return Attributes(
            str(asked.get("verb", "")),
            "",
            True,
            str(asked.get("group", "")),
            str(asked.get("resource", "")),
            str(asked.get("subresource", "")),
            str(asked.get("namespace", "")),
            str(asked.get("name", "")),
        )
    asked = _mapping(non_resource, "spec.nonResourceAttributes")
    return Attributes(str(asked.get("verb", "")), str(asked.get("path", "")), False)


def review_access(authorizer: Authorizer, user: User, review: Mapping[str, Any]) -> dict[str, Any]:
    """The review with its status: allowed, denied (RBAC never denies outright) and kube-apiserver's reason."""
    spec = dict(_mapping(review.get("spec"), "spec"))
    decision = authorizer.decide(user, requested_attributes(spec))
    return {
        "kind": ACCESS_REVIEW,
        "apiVersion": API_VERSION,
        "metadata": _metadata(review),
        "spec": spec,
        "status": {"allowed": decision.allowed, "denied": False, "reason": decision.reason},
    }


def _resource_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    listed = {key: list(rule.get(key) or []) for key in ("verbs", "apiGroups", "resources", "resourceNames")}
    return {key: value for key, value in listed.items() if value or key == "verbs"}


def review_rules(authorizer: Authorizer, user: User, review: Mapping[str, Any]) -> dict[str, Any]:
    """Every rule that applies to the user in ``spec.namespace`` (cluster-wide ones included), as
    kube-apiserver lists them: unmerged, a dangling roleRef making the list incomplete."""
    namespace = str(_mapping(review.get("spec"), "spec").get("namespace") or "")
    if not namespace:
        raise bad_request("no namespace on request")
    if user.admin:
        rules, errors = list(ADMIN_RULES), []
    else:
        grants = list(authorizer.grants(user, namespace))
        rules = [rule for grant in grants for rule in grant.rules]
        errors = [grant.error for grant in grants if grant.error]
    status: dict[str, Any] = {
        "resourceRules": [_resource_rule(rule) for rule in rules if rule.get("resources")],
        "nonResourceRules": [
            {"verbs": list(rule.get("verbs") or []), "nonResourceURLs": list(rule["nonResourceURLs"])}
            for rule in rules
            if rule.get("nonResourceURLs")
        ],
        "incomplete": bool(errors),
    }
    if errors:
        status["evaluationError"] = aggregate(errors)
    return {
        "kind": RULES_REVIEW,
        "apiVersion": API_VERSION,
        "metadata": _metadata(review),
        "spec": {},
        "status": status,
    }


class AccessReviews:
    """The HTTP side: ``ApiHandlers`` hands it POSTs of the review kinds (see ``discovery.REVIEW_TYPES``)."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def serve(self, request: web.Request, rtype: ResourceType) -> web.Response:
        if request.method != "POST":
            raise method_not_allowed(request.method)
        review = await read_object(request)
        if not isinstance(review, Mapping):
            raise bad_request(f"the request body must be a {rtype.kind} object")
        answer = review_access if rtype.kind == ACCESS_REVIEW else review_rules
        return web.json_response(answer(self.authorizer, user_of(request), review), status=201)
