"""The report's "CPU per answer at full load": the median of the rounds for each
server, and how its own code's share and its total compare with the reference's."""

from __future__ import annotations

from typing import Any

from bench.report import cpu_table, summarise


def _run(
    server: str, round_: int, user: float | None, kernel: float | None, kind: str = "peak"
) -> dict[str, Any]:
    return {
        "server": server,
        "mix": "miss",
        "kind": kind,
        "round": round_,
        "discarded": False,
        "qps": 1000.0,
        "avg_latency_ms": 1.0,
        "p50_ms": 0.1,
        "p99_ms": 1.0,
        "lost": 0,
        "server_cores": 1.0,
        "other_cores": 0.0,
        "user_us": user,
        "kernel_us": kernel,
    }


def _rows(runs: list[dict[str, Any]], servers: tuple[str, ...]) -> dict[str, list[str]]:
    summary, _ratios = summarise(runs, servers, ("miss",))
    table = cpu_table(summary, servers, ("miss",))
    return {
        cells[2]: cells[3:10]
        for line in table
        if line.startswith("| miss")
        for cells in [[cell.strip() for cell in line.split("|")]]
    }


def test_each_server_gets_the_median_of_its_rounds_and_its_ratio_to_the_reference() -> None:
    runs = [
        _run("aiwall", 1, 40.0, 20.0),
        _run("aiwall", 2, 60.0, 30.0),
        _run("aiwall", 3, 50.0, 10.0),
        _run("unbound", 1, 10.0, 24.0),
        _run("unbound", 2, 12.0, 25.0),
        _run("unbound", 3, 8.0, 26.0),
    ]
    runs += [_run("aiwall", 1, 90.0, 30.0, "half"), _run("aiwall", 2, 70.0, 40.0, "half")]
    rows = _rows(runs, ("aiwall", "unbound"))
    # Medians at full load: aiwall 50 + 20, Unbound 10 + 25; aiwall at half load 80 + 35.
    full, half = ["50.0 µs", "20.0 µs", "70.0 µs", "5.00x", "2.00x"], ["80.0 µs", "35.0 µs"]
    assert rows["aiwall"] == full + half
    assert rows["unbound"] == ["10.0 µs", "25.0 µs", "35.0 µs", "1.00x", "1.00x", "-", "-"]


def test_without_the_reference_there_is_no_ratio() -> None:
    rows = _rows([_run("aiwall", 1, 40.0, 20.0)], ("aiwall",))
    assert rows["aiwall"] == ["40.0 µs", "20.0 µs", "60.0 µs", "-", "-", "-", "-"]


def test_results_without_the_split_have_no_table() -> None:
    # A results.json from before the split was measured, re-rendered.
    summary, _ = summarise([_run("aiwall", 1, None, None)], ("aiwall",), ("miss",))
    assert cpu_table(summary, ("aiwall",), ("miss",)) == []
