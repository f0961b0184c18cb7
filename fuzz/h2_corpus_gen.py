#!/usr/bin/python3
"""Writes the seed corpus of fuzz/http_h2_session_fuzz.cpp: real frame sequences produced by
python3-h2 (an independent HTTP/2 implementation), plus hand-built ones for what h2 would not
send (floods, CONTINUATION splits). Run from the repository root: fuzz/h2_corpus_gen.py

Each file: control byte, piece-size byte, then the peer's bytes (see the fuzz target)."""
import os
import struct

import h2.config
import h2.connection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http_h2_session")
SERVER, CLIENT, SMALL, PREFACE, ANSWER = 0, 1, 2, 4, 8

REQ = [(":method", "GET"), (":scheme", "https"), (":authority", "api.example.com"), (":path", "/v1/models")]


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def lit(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def write(name, control, data, piece=255):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([control, piece]) + data)


def server_inputs():
    c = client()
    c.send_headers(1, REQ, end_stream=True)
    write("get", SERVER | ANSWER, c.data_to_send())

    c = client()
    c.send_headers(1, [(":method", "POST")] + REQ[1:] + [("content-type", "application/grpc"), ("te", "trailers"),
                                                         ("authorization", "Bearer $MSB_KEY")])
    c.send_data(1, b"\x00\x00\x00\x00\x05hello")
    c.send_headers(3, REQ + [("x-request", "two")], end_stream=True)
    c.send_headers(1, [("grpc-timeout", "1S")], end_stream=True)
    write("grpc_post_trailers_two_streams", SERVER | ANSWER, c.data_to_send(), 7)

    c = client()
    c.send_headers(1, REQ + [("cookie", "a=" + "x" * 200), ("user-agent", "h2-seed")], end_stream=True)
    c.send_headers(3, REQ + [("cookie", "a=" + "x" * 200), ("user-agent", "h2-seed")], end_stream=True)
    write("hpack_reuse", SERVER, c.data_to_send())

    c = client()
    c.send_headers(1, REQ + [("x-big", "b" * 2000)], end_stream=True)
    write("big_header_small_limits", SERVER | SMALL, c.data_to_send())

    c = client()
    for sid in range(1, 40, 2):
        c.send_headers(sid, REQ, end_stream=True)
        c.reset_stream(sid, 8)
    write("rapid_reset", SERVER | SMALL, c.data_to_send())

    c = client()
    c.send_headers(1, [(":method", "POST")] + REQ[1:])
    c.send_data(1, b"d" * 3000)
    c.ping(b"12345678")
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    c.increment_flow_control_window(5000)
    c.end_stream(1)
    write("data_ping_settings_small", SERVER | SMALL | ANSWER, c.data_to_send(), 100)

    c = client()
    c.send_headers(1, REQ, end_stream=True)
    c.close_connection()
    write("goaway", SERVER, c.data_to_send())

    block = b"\x82\x87\x84" + lit(b":authority", b"api.example.com") + lit(b"authorization", b"Bearer $MSB_KEY")
    split = frame(1, 0x1, 1, block[:6]) + frame(9, 0, 1, block[6:20]) + frame(9, 0x4, 1, block[20:])
    write("continuation_split", SERVER | PREFACE | ANSWER, split)
    flood = frame(1, 0, 1, block) + b"".join(frame(9, 0, 1, lit(b"x-a", b"b")) for _ in range(20))
    write("continuation_flood", SERVER | PREFACE, flood)
    write("ping_flood", SERVER | PREFACE | SMALL, b"".join(frame(6, 0, 0, b"p" * 8) for _ in range(20)))
    mismatch = frame(1, 0x5, 1, block + lit(b"host", b"evil.example.net"))
    write("host_mismatch", SERVER | PREFACE, mismatch)
    table = frame(1, 0x5, 1, b"\x3f\xe1\x1f" + block)
    write("table_size_update", SERVER | PREFACE | SMALL, table)


def client_inputs():
    # The upstream's side: an h2 server answering the fuzz target's requests (stream 1 GET,
    # stream 3 POST when ANSWER is set).
    c = client()
    c.send_headers(1, REQ, end_stream=True)
    c.send_headers(3, [(":method", "POST")] + REQ[1:], end_stream=False)
    c.end_stream(3)
    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    s.initiate_connection()
    s.receive_data(c.data_to_send())
    s.send_headers(1, [(":status", "200"), ("content-type", "text/plain"), ("set-cookie", "k=v")])
    s.send_data(1, b"response body " * 20, end_stream=True)
    s.send_headers(3, [(":status", "100")])
    s.send_headers(3, [(":status", "200"), ("content-type", "application/grpc")])
    s.send_data(3, b"\x00\x00\x00\x00\x02ok")
    s.send_headers(3, [("grpc-status", "0"), ("grpc-message", "done")], end_stream=True)
    write("responses_trailers", CLIENT | ANSWER, s.data_to_send(), 11)

    s = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    s.initiate_connection()
    c = client()
    c.send_headers(1, REQ, end_stream=True)
    s.receive_data(c.data_to_send())
    s.reset_stream(1, 7)
    s.close_connection(error_code=0, last_stream_id=1)
    write("reset_goaway", CLIENT, s.data_to_send())

    push = struct.pack(">I", 2) + b"\x82\x87\x84" + lit(b":authority", b"api.example.com")
    write("push_promise", CLIENT | PREFACE, frame(5, 0x4, 1, push))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    server_inputs()
    client_inputs()
