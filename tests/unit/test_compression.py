"""permessage-deflate as the notifier negotiates it: no zlib state kept between messages."""

from __future__ import annotations

import zlib

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from reelflow_notifier.compression import CACHE, SharedDeflate, SharedDeflateFactory

#: what Chrome and Firefox offer
BROWSER_OFFER = [("client_max_window_bits", None)]


def negotiated() -> tuple[dict[str, str | None], PerMessageDeflate]:
    params, extension = SharedDeflateFactory().process_request_params(BROWSER_OFFER, [])
    return dict(params), extension


def test_a_browser_offer_gets_no_context_takeover_both_ways_and_small_windows() -> None:
    params, extension = negotiated()

    assert params == {
        "server_no_context_takeover": None,
        "client_no_context_takeover": None,
        "server_max_window_bits": "12",
        "client_max_window_bits": "12",
    }
    assert isinstance(extension, SharedDeflate)


def test_an_idle_connection_keeps_no_zlib_state() -> None:
    _, server = negotiated()
    client = PerMessageDeflate(True, True, 12, 12)

    server.encode(Frame(Opcode.TEXT, b'{"type": "snapshot"}'))
    server.decode(client.encode(Frame(Opcode.TEXT, b'{"type": "subscribe"}')))

    assert not hasattr(server, "encoder")
    assert not hasattr(server, "decoder")


def test_a_message_sent_on_many_connections_is_compressed_once() -> None:
    payload = b'{"type": "clip.updated", "seq": 7, "project_id": "p"}' * 5
    hits, misses = CACHE.hits, CACHE.misses
    frames = [negotiated()[1].encode(Frame(Opcode.TEXT, payload)) for _ in range(100)]

    assert (CACHE.hits - hits, CACHE.misses - misses) == (99, 1)
    for frame in frames:
        assert frame.rsv1
        # What a browser does with it: a fresh inflater per message (no context takeover).
        inflater = zlib.decompressobj(wbits=-12)
        assert inflater.decompress(bytes(frame.data) + b"\x00\x00\xff\xff") == payload


def test_each_connection_of_a_burst_gets_the_same_bytes_as_compressing_it_alone() -> None:
    payload = b'{"type": "project.finished", "seq": 9}'
    alone = PerMessageDeflate(True, True, 12, 12, {"memLevel": 5})

    expected = alone.encode(Frame(Opcode.TEXT, payload))

    shared = negotiated()[1].encode(Frame(Opcode.TEXT, payload))

    assert bytes(shared.data) == bytes(expected.data)
