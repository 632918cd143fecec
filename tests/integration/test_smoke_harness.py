from tests.support import ask


def test_blocked_and_forwarded(start_server):
    server = start_server()
    assert ask(server, "chat.deepseek.com").rcode() == 3
    assert ask(server, "www.python.org").answer[0][0].to_text() == "198.51.100.7"
