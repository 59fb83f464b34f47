"""calls.signaling.signalr on its own: the hub protocol's wire format (JSON, 0x1E records)."""

from __future__ import annotations

import json

import pytest

from calls.signaling import signalr

RS = "\x1e"


def test_it_splits_records_across_and_within_frames() -> None:
    reader = signalr.RecordReader(max_chars=100)
    assert reader.feed('{"type":6}' + RS + '{"type":1,') == ['{"type":6}']
    assert reader.feed('"target":"A"}' + RS) == ['{"type":1,"target":"A"}']
    assert reader.feed("") == []
    with pytest.raises(signalr.HubProtocolError, match="too large"):
        reader.feed("x" * 101)


def test_it_accepts_only_the_json_protocol_version_1() -> None:
    signalr.parse_handshake('{"protocol":"json","version":1}')
    for bad, said in [
        ('{"protocol":"messagepack","version":1}', "'messagepack' is not supported"),
        ('{"protocol":"json","version":2}', "version 2"),
        ('{"protocol":"json"}', "version is required"),
        ('{"protocol":"json","version":true}', "version is required"),
        ("[]", "JSON object"),
        ("{", "not JSON"),
    ]:
        with pytest.raises(signalr.HubProtocolError, match=said):
            signalr.parse_handshake(bad)


def test_it_reads_invocations_pings_and_closes() -> None:
    with_id = signalr.parse('{"type":1,"invocationId":"7","target":"M","arguments":[1,{"a":2}]}')
    assert with_id == signalr.Invocation("M", (1, {"a": 2}), "7")
    assert signalr.parse('{"type":1,"target":"M"}') == signalr.Invocation("M", (), None)
    streamed = signalr.parse('{"type":1,"target":"M","arguments":[],"streamIds":["1"]}')
    assert isinstance(streamed, signalr.Invocation)
    assert isinstance(streamed.arguments[0], signalr.StreamArgument)
    assert signalr.parse('{"type":4,"invocationId":"3","target":"S","arguments":[]}') == (
        signalr.StreamInvocation("3")
    )
    assert signalr.parse('{"type":6}') == signalr.Ping()
    assert signalr.parse('{"type":7,"error":"bye"}') == signalr.Close("bye")
    assert signalr.parse('{"type":7}') == signalr.Close(None)
    assert signalr.parse('{"type":3,"invocationId":"1","result":1}') == signalr.Ignored(3)
    assert signalr.parse('{"type":99}') == signalr.Ignored(99)  # future types: ignored
    for bad in [
        '{"type":"1"}',
        '{"target":"M"}',
        '{"type":1}',
        '{"type":1,"target":""}',
        '{"type":1,"target":"M","arguments":{}}',
        '{"type":1,"target":"M","invocationId":7}',
        "[1]",
        "not json",
    ]:
        with pytest.raises(signalr.HubProtocolError):
            signalr.parse(bad)


def test_it_writes_what_the_official_client_reads() -> None:
    def record(text: str) -> dict:
        assert text.endswith(RS) and text.count(RS) == 1
        return json.loads(text[:-1])

    assert signalr.handshake_response() == "{}" + RS
    assert record(signalr.handshake_response("no")) == {"error": "no"}
    assert record(signalr.invocation("SdpAnswerReceived", {"sdp": "v=0", "type": "answer"})) == {
        "type": 1,
        "target": "SdpAnswerReceived",
        "arguments": [{"sdp": "v=0", "type": "answer"}],
    }
    assert record(signalr.completion("4")) == {"type": 3, "invocationId": "4"}
    with_result = {"type": 3, "invocationId": "4", "result": 2}
    assert record(signalr.completion("4", result=2)) == with_result
    assert record(signalr.completion("4", error="bad")) == {
        "type": 3,
        "invocationId": "4",
        "error": "bad",
    }
    assert record(signalr.ping()) == {"type": 6}
    assert record(signalr.close()) == {"type": 7}
    assert record(signalr.close("why", allow_reconnect=True)) == {
        "type": 7,
        "error": "why",
        "allowReconnect": True,
    }
