"""Count every query and every answer; the outermost stage, so nothing escapes it."""

from __future__ import annotations

from resolver.dns.model import Answer, Handler, Outcome, Query, Resolution
from resolver.dns.pending import Pending
from resolver.metrics import Metrics


class MetricsHandler:
    name = "metrics"

    def __init__(self, metrics: Metrics, next_handler: Handler) -> None:
        self._metrics = metrics
        self._next = next_handler

    def handle(self, query: Query) -> Resolution:
        self._metrics.count_query(query.protocol, query.qtype)
        result = self._next.handle(query)
        if isinstance(result, Answer):
            self._count(result)
            return result
        # The last step: what the inner stages made of the answer is what is counted.
        return Pending.of(result).then(self._counted)

    def _count(self, answer: Answer) -> None:
        self._metrics.count_response(answer.outcome, answer.rcode)
        if answer.outcome is Outcome.BLOCKED:
            self._metrics.count_blocked(answer.service, answer.category, answer.group)

    def _counted(self, answer: Answer) -> Answer:
        self._count(answer)
        return answer
