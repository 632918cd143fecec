"""bench/stages.py: perf's samples of the server put in the stages of the README's "Where
a query's time goes"."""

from __future__ import annotations

from bench.stages import COLLECTOR, LOOP, OTHER, parse_perf_script, shares, stage_of, table

# Two samples as `perf script -F tid,ip,sym` prints them (trimmed): a sendto in the
# kernel under the listener's send, and epoll_wait under asyncio's loop.
PERF_SCRIPT = """\
 4468
\tffffffff82203249 _raw_spin_unlock_irqrestore
\tffffffff81000130 entry_SYSCALL_64_after_hwframe
\t          108ef3 __libc_sendto
\t           7ac10 CPyDef_transport___UdpListener____send_bytes
\t           7bd20 CPyDef_transport___UdpListener____send
\t           7c000 CPyDef_transport___UdpListener____on_readable
\t          2508e3 _PyEval_EvalFrameDefault

 4468
\tffffffff81732438 do_epoll_wait
\t          108ef3 epoll_wait
\t            2649 select_epoll_poll
\t           fddc4 _PyEval_EvalFrameDefault
"""


def test_each_sample_is_read_innermost_first() -> None:
    samples = parse_perf_script(PERF_SCRIPT.splitlines())
    assert [s[0] for s in samples] == ["_raw_spin_unlock_irqrestore", "do_epoll_wait"]
    assert samples[0][3] == "CPyDef_transport___UdpListener____send_bytes"
    assert len(samples[1]) == 4


def test_the_kernel_and_the_interpreter_count_for_the_compiled_function_that_called_them() -> None:
    samples = parse_perf_script(PERF_SCRIPT.splitlines())
    # Not the listener's read, which called the send: the innermost compiled function.
    assert stage_of(samples[0]) == "send the answer (sendto)"
    assert stage_of(samples[1]) == LOOP


def test_small_helpers_count_for_their_caller_but_the_walk_of_an_answer_is_a_stage() -> None:
    made_in_parse = ["_PyObject_Malloc", "CPyDef_model___Query", "CPyDef_codec___plain_query"]
    assert stage_of(made_in_parse) == "parse the question"
    walked = ["PyLong_FromLong", "CPyDef_wire___scan_response", "CPyDef_udp___check"]
    assert stage_of(walked) == "upstream: walk the answer"
    assert stage_of(["CPyDef_wire___skip_name", "CPyDef_codec___encode_answer"]) == (
        "encode the answer"
    )


def test_a_socket_of_the_pool_is_not_its_question_sent() -> None:
    assert stage_of(["CPyDef_udp___UdpSockets___acquire"]) == (
        "upstream: the socket (reused, opened, closed)"
    )
    assert stage_of(["CPyDef_udp___UdpSocket___ask"]) == "upstream: send the query (send)"


def test_a_collection_counts_as_the_collector_wherever_it_struck() -> None:
    assert stage_of(["visit_decref", "gc_collect_main", "CPyDef_model___Query"]) == COLLECTOR


def test_a_compiled_function_of_no_stage_is_other() -> None:
    assert stage_of(["CPyDef_somewhere___new_function"]) == OTHER


def test_the_table_splits_each_mix_cpu_per_answer_by_the_shares() -> None:
    send = ["CPyDef_transport___UdpListener____send"]
    cache = ["CPyDef_cache___AnswerCache___get"]
    found = shares([send, send, send, cache])
    assert found["send the answer (sendto)"] == 0.75
    assert found["cache: look up, store"] == 0.25
    text = table({"cached": (4.0, 6.0, found)})
    assert "| send the answer (sendto) | 7.5 |" in text
    assert "| cache: look up, store | 2.5 |" in text
    assert "| **CPU per answer (user + kernel)** | **10.0** |" in text
    assert "counters" not in text  # no sample: no row
