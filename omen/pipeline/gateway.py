"""The gateway's long-lived state, built once from the config: providers, the model table, the model
groups and their deployments, the router, the upstream pool, the master key and the access log.
Handlers read it; nothing here is per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omen.auth.master_key import MasterKey
from omen.config.schema import OmenConfig
from omen.providers.base import Provider
from omen.providers.demo import DemoModel
from omen.providers.registry import create_provider
from omen.routing.groups import Deployments
from omen.routing.router import Router
from omen.routing.status import StatusTracker
from omen.routing.table import ModelTable
from omen.server.access_log import AccessLog
from omen.transport.exchange import Exchange
from omen.transport.pool import UpstreamPool


@dataclass
class Gateway:
    config: OmenConfig
    providers: dict[str, Provider]
    table: ModelTable
    pool: UpstreamPool
    exchange: Exchange
    master_key: MasterKey
    access_log: AccessLog
    deployments: Deployments
    router: Router
    demo: DemoModel | None = None
    ready: bool = False
    discovery_errors: dict[str, str] = field(default_factory=dict)
    status: StatusTracker = field(default_factory=StatusTracker)
    probes: Any = None  # the active health ProbeLoop while it runs (omen.pipeline.probes)
    operations: dict[tuple[str, str], Any] = field(default_factory=dict)  # (provider, endpoint) -> relay Operation

    @classmethod
    def from_config(cls, config: OmenConfig, *, access_log: AccessLog | None = None) -> Gateway:
        providers: dict[str, Provider] = {pid: create_provider(pid, cfg) for pid, cfg in config.providers.items()}
        demo_enabled = config.demo if config.demo is not None else not providers
        demo = DemoModel() if demo_enabled else None
        if demo is not None:
            providers[demo.id] = demo  # type: ignore[assignment]
        pool = UpstreamPool()
        table = ModelTable.from_config(config, demo_enabled)
        deployments = Deployments.from_config(config, table)
        return cls(
            config=config,
            providers=providers,
            table=table,
            pool=pool,
            exchange=Exchange(pool),
            master_key=MasterKey(config.auth.master_key),
            access_log=access_log or AccessLog(config.server.access_log),
            deployments=deployments,
            router=Router(config, table, deployments, providers),
            demo=demo,
        )

    def usable_providers(self) -> list[str]:
        return list(self.providers)
