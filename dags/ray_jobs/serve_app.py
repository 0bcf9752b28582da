"""A small Ray Serve application for the RayService example: scores ``x`` with a weight set in the Serve
config (``user_config``), so a config update visibly changes the answers without a restart."""

from __future__ import annotations

from ray import serve
from starlette.requests import Request


@serve.deployment
class Scorer:
    def __init__(self) -> None:
        self.weight = 1.0

    def reconfigure(self, config: dict) -> None:  # Serve calls it with user_config, on start and on update
        self.weight = float(config.get("weight", 1.0))

    async def __call__(self, request: Request) -> dict:
        x = float(request.query_params.get("x", "1"))
        return {"score": self.weight * x, "weight": self.weight}


app = Scorer.bind()
