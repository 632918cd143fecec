from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome
from resolver.handlers.forwarding import ForwardingHandler
from resolver.handlers.metrics import MetricsHandler
from resolver.metrics import Metrics
from resolver.policy.domainset import DomainSet
from tests.unit.handler_support import FakeNext, make_query, resolve


class NamedForwarder:
    """Stands in for the upstream Forwarder: answers at once, remembering who asked."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.asked: list[bytes] = []

    def ask(self, query):
        self.asked.append(query.qname)
        return responses.error(query, wire.NOERROR, Outcome.FORWARDED)


def test_conditional_zones_go_to_their_own_servers_most_specific_first():
    default, corp, lab = NamedForwarder("default"), NamedForwarder("corp"), NamedForwarder("lab")
    zones: DomainSet = DomainSet()
    zones.add(wire.text_to_name("corp.example"), corp)
    zones.add(wire.text_to_name("lab.corp.example"), lab)
    handler = ForwardingHandler(default, zones)
    for name in ("dc1.corp.example", "gpu.lab.corp.example", "www.example", "corp.example"):
        resolve(handler.handle(make_query(name)))
    assert [wire.name_to_text(n) for n in corp.asked] == ["dc1.corp.example", "corp.example"]
    assert [wire.name_to_text(n) for n in lab.asked] == ["gpu.lab.corp.example"]
    assert [wire.name_to_text(n) for n in default.asked] == ["www.example"]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_metrics_count_queries_answers_and_blocks_immediate_and_later():
    metrics = Metrics()
    blocked = responses.error(make_query("x.test"), wire.NXDOMAIN, Outcome.BLOCKED)
    blocked.service, blocked.category, blocked.group = "deepseek", "chat_assistant", "lab"
    MetricsHandler(metrics, FakeNext(answer=blocked)).handle(make_query("x.test", "AAAA"))
    later = MetricsHandler(metrics, FakeNext(delayed=True))
    result = later.handle(make_query("y.test", "TYPE999"))
    assert not isinstance(result, Answer)
    assert sample(metrics, "aiwall_responses_total", outcome="forwarded", rcode="NOERROR") == 0
    resolve(result)
    assert sample(metrics, "aiwall_queries_total", protocol="udp", qtype="AAAA") == 1
    # Rare types are folded into "other" so the label stays bounded.
    assert sample(metrics, "aiwall_queries_total", protocol="udp", qtype="other") == 1
    assert sample(metrics, "aiwall_responses_total", outcome="blocked", rcode="NXDOMAIN") == 1
    assert sample(metrics, "aiwall_responses_total", outcome="forwarded", rcode="NOERROR") == 1
    assert (
        sample(
            metrics,
            "aiwall_blocked_queries_total",
            service="deepseek",
            category="chat_assistant",
            group="lab",
        )
        == 1
    )
