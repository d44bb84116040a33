"""The model names this front door serves, and the gateway policy each one selects."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cascade.v1 import cascade_pb2
from services.core.settings import CascadeSettings
from services.http.errors import ApiError, model_not_found
from services.http.protocol import ModelCard, ModelList

_POLICY_MODELS = {
    "cascade": cascade_pb2.POLICY_UNSPECIFIED,  # the gateway's default policy
    "cascade:route": cascade_pb2.POLICY_ROUTE,
    "cascade:small": cascade_pb2.POLICY_SMALL,
    "cascade:large": cascade_pb2.POLICY_LARGE,
}


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    # None: a configured tier the gRPC API cannot select (only the small and large tiers have a policy).
    policy: cascade_pb2.Policy | None
    tier: str | None = None


class Catalog:
    def __init__(self, *, settings: CascadeSettings, created: int) -> None:
        self._created = created
        self._models = {name: ServedModel(name, policy) for name, policy in _POLICY_MODELS.items()}
        by_tier = {
            settings.router.small_tier: cascade_pb2.POLICY_SMALL,
            settings.router.large_tier: cascade_pb2.POLICY_LARGE,
        }
        for tier in settings.tiers:
            self._models[f"tier:{tier}"] = ServedModel(f"tier:{tier}", by_tier.get(tier), tier)

    def policy(self, model: str) -> cascade_pb2.Policy:
        """The policy ``model`` selects; raises ApiError (404) for a name that cannot be served."""
        served = self._models.get(model)
        if served is None:
            raise model_not_found(model)
        if served.policy is None:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND,
                f"tier {served.tier!r} cannot be asked directly: the gateway selects only the small and large "
                "tiers by policy (cascade:small, cascade:large)",
                param="model",
                code="model_not_found",
            )
        return served.policy

    def listing(self) -> ModelList:
        return ModelList(data=[self.card(m) for m in self._models.values()])

    def card(self, served: ServedModel) -> ModelCard:
        policy = None if served.policy is None else _policy_name(served.policy)
        return ModelCard(id=served.name, created=self._created, cascade={"policy": policy, "tier": served.tier})

    def get(self, model: str) -> ModelCard:
        if model not in self._models:
            raise model_not_found(model)
        return self.card(self._models[model])


def _policy_name(policy: cascade_pb2.Policy) -> str:
    if policy == cascade_pb2.POLICY_UNSPECIFIED:
        return "default"
    return cascade_pb2.Policy.Name(policy).removeprefix("POLICY_").lower()
