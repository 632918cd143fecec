"""The one place where the order of the pipeline is decided."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from resolver.config import Config, DnsEndpoint, UpstreamServer, system_nameservers
from resolver.dns import wire
from resolver.dns.model import Handler
from resolver.handlers.access import AccessHandler
from resolver.handlers.blocking import Attempts, BlockingHandler
from resolver.handlers.cache import AnswerCache, CacheHandler
from resolver.handlers.ddr import DdrHandler
from resolver.handlers.forwarding import ForwardingHandler, Upstreams
from resolver.handlers.metrics import MetricsHandler
from resolver.handlers.minimal_any import MinimalAnyHandler
from resolver.handlers.ratelimit import RateLimitHandler
from resolver.handlers.sanity import SanityHandler
from resolver.metrics import Metrics
from resolver.policy.domainset import DomainSet
from resolver.policy.groups import ClientGroups
from resolver.shared import BucketTable
from resolver.upstream.forwarder import Forwarder, Upstream
from resolver.upstream.health import Health


@dataclass(frozen=True, slots=True)
class ProcessParts:
    """What the pipeline of one process shares with the other workers of a server (a
    single-process server has the defaults: nothing shared)."""

    worker: int = 0  # this worker's index
    workers: int = 1  # how many answer, splitting the cache's bytes between them
    # How each upstream's health is known (default: this process's own probes).
    health: Callable[[Upstream], Health] | None = None
    buckets: BucketTable | None = None  # the rate limiter's shared buckets


@dataclass(slots=True)
class Pipeline:
    """The assembled chain plus the stages others need to reach (reload, readiness)."""

    head: Handler
    blocking: BlockingHandler
    cache: CacheHandler
    forwarder: Forwarder
    ddr: DdrHandler


def upstream_servers(specs: tuple[UpstreamServer, ...]) -> tuple[Upstream, ...]:
    """The upstreams in order, ``system`` read from /etc/resolv.conf now."""
    servers: list[Upstream] = []
    for spec in specs:
        if spec.encrypted is not None:
            servers.append(Upstream.encrypted(spec.encrypted))
        elif spec.endpoint is not None:
            servers.append(Upstream.at(spec.endpoint))
        else:
            servers.extend(Upstream.at(DnsEndpoint.parse(s)) for s in system_nameservers())
    if not servers:
        raise ValueError("upstream.servers: 'system' found no nameserver in /etc/resolv.conf")
    return tuple(servers)


def build_pipeline(
    config: Config,
    groups: ClientGroups,
    metrics: Metrics,
    cache: AnswerCache | None = None,
    attempts: Attempts | None = None,
    parts: ProcessParts | None = None,
) -> Pipeline:
    """``cache``: the running cache, handed over by a config reload that kept its settings;
    ``attempts``: where attempts on banned names are reported (the audit trail);
    ``parts``: what this process shares with the other workers."""
    parts = parts or ProcessParts()
    timeout = config.upstream.timeout
    ca_file = config.upstream.ca_path(config.base_dir)
    forwarder = Forwarder(
        upstream_servers(config.upstream.servers), timeout, metrics, parts.health, ca_file=ca_file
    )
    conditional: DomainSet[Upstreams] = DomainSet()
    for domain, servers in config.upstream.conditional.items():
        conditional.add(
            wire.text_to_name(domain),
            Forwarder(upstream_servers(servers), timeout, metrics, parts.health, ca_file=ca_file),
        )

    # Built from the last stage back to the first; read bottom-up for the query's path.
    # 8. forwarding: terminal; only questions nobody before could answer cost a round trip.
    forwarding = ForwardingHandler(forwarder, conditional)
    # 7. cache: after blocking, so a policy change applies at once to names already cached,
    #    and a banned name is never answered from a stale entry either.
    answers = cache if cache is not None else AnswerCache(config.cache, metrics, parts.workers)
    cache_handler = CacheHandler(answers, metrics, forwarding, config.cache)
    # 6. minimal ANY: after blocking, so a banned name's ANY stays blocked; before the cache
    #    and upstream, so ANY never costs a round trip nor relays a big answer (RFC 8482).
    minimal_any = MinimalAnyHandler(cache_handler)
    # 5. blocking: before the cache and upstream, so a banned name never leaves the building;
    #    it also inspects the CNAMEs of what comes back from the cache and upstream.
    blocking = BlockingHandler(
        groups,
        minimal_any,
        cname_inspection=config.blocking.cname_inspection,
        attempts=attempts or metrics.count_attempt,
    )
    # 4b. DDR (RFC 9462): after access, so strangers learn nothing of our endpoints; before
    #    blocking, the cache and forwarding, so _dns.resolver.arpa is never forwarded (the
    #    upstream's encrypted endpoints would be announced: a bypass of the ban).
    ddr = DdrHandler(config, blocking)
    # 4. rate limit (only when ratelimit.rate is set): after access, so strangers only ever
    #    get a REFUSED no bigger than their query; before blocking, so a flood costs no
    #    policy lookup, cache entry or upstream query.
    limited: Handler = ddr
    if config.ratelimit.rate > 0:
        limited = RateLimitHandler(config.ratelimit, metrics, ddr, buckets=parts.buckets)
    # 3. access: strangers are refused before they cost a lookup or learn the policy.
    access = AccessHandler(config.access.allow, limited, metrics)
    # 2. sanity: malformed and unsupported queries never reach policy code.
    sanity = SanityHandler(access)
    # 1. metrics: outermost, so every answer, including FORMERR and REFUSED, is counted.
    head = MetricsHandler(metrics, sanity)
    return Pipeline(head=head, blocking=blocking, cache=cache_handler, forwarder=forwarder, ddr=ddr)
