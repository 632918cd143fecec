"""Why a name is (not) blocked for a client: the same explanation for the CLI and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from resolver.dns import wire
from resolver.policy.catalog import Catalog, Service
from resolver.policy.domainset import DomainSet
from resolver.policy.groups import ClientGroups
from resolver.policy.verdict import Verdict, verdict


@dataclass(frozen=True)
class Explanation:
    name: str
    client: str
    group: str
    decision: str  # "blocked", "allowed", "report" (would be blocked), "forwarded"
    answer: str  # what the client gets: "NXDOMAIN", "SINKHOLE", ..., or "forwarded"
    entry: str  # the list or catalog entry that matched ("" when none)
    rule: str  # the config rule that decided
    service: str = ""
    service_name: str = ""
    vendor: str = ""
    vendor_country: str = ""
    data_location: str = ""
    data_source: str = ""
    categories: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"name:     {self.name}"]
        if self.client:
            out.append(f"client:   {self.client} (group {self.group})")
        verdicts = {
            "blocked": f"BLOCKED, answered {self.answer}",
            "report": "allowed, but reported: a report-only rule would block it",
            "allowed": f"allowed, forwarded upstream (entry {self.entry})",
            "forwarded": "allowed, forwarded upstream",
        }
        out.append(f"decision: {verdicts[self.decision]}")
        if self.entry and self.decision != "allowed":
            out.append(f"entry:    {self.entry} (and its subdomains)")
        if self.service:
            data = self.data_location + (f" ({self.data_source})" if self.data_source else "")
            out += [
                f"service:  {self.service_name} [{self.service}]",
                f"vendor:   {self.vendor} ({self.vendor_country})",
                f"data:     {data}",
                f"category: {', '.join(self.categories)}",
            ]
        out.append(f"rule:     {self.rule}")
        return out


def _catalog_service_for(catalog: Catalog | None, name: bytes) -> Service | None:
    """The catalog service whose domains cover ``name``, whether or not it is banned."""
    if catalog is None:
        return None
    owners: DomainSet[Service] = DomainSet()
    for service in catalog.services:
        for domain in service.domains:
            owners.add(wire.text_to_name(domain.name), service)
    found = owners.match(name, wire.label_starts(name))
    return found.value if found is not None else None


def explain(
    groups: ClientGroups, catalog: Catalog | None, name: str, client: str = ""
) -> Explanation:
    """Raises ValueError for something that is not a domain name."""
    group = groups.group_for(client) if client else groups.default
    decision = group.blocklist.decide(name)
    rule = decision.rule
    wire_name = wire.text_to_name(decision.name)
    service = _catalog_service_for(catalog, wire_name)
    decided = verdict(rule, group.mode, paused=False)
    answer = "forwarded"
    if rule is None:
        why = "no list or catalog entry covers it"
        if service is not None:
            why = "the service is in the catalog, but the policy does not select it"
    elif decided is Verdict.REPORT and rule.action != "report":
        why = f"group {group.name}: mode report"
    else:
        why = rule.policy
    if decided is Verdict.BLOCK:
        assert rule is not None
        mode = "nxdomain" if rule.action == "canary" else group.answers.mode
        answer = f"{mode.upper()} (block TTL {group.answers.ttl}s)"
    details: dict[str, object] = {}
    if service is not None:
        details = {
            "service": service.id,
            "service_name": service.name,
            "vendor": service.vendor,
            "vendor_country": service.vendor_country,
            "data_location": service.data_location.country,
            "data_source": service.data_location.source or "",
            "categories": service.categories,
        }
    return Explanation(
        name=decision.name,
        client=client,
        group=group.name,
        decision=decided.value,
        answer=answer,
        entry=decision.entry,
        rule=why,
        **details,  # type: ignore[arg-type]
    )
