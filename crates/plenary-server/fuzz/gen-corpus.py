#!/usr/bin/env python3
"""Writes small seed corpora for the fuzz targets of plenary-server and the
SFU's `datagram` target (generated, not checked in):

    python3 gen-corpus.py            # corpus/<target>/ here, and
                                     # ../../plenary-sfu/fuzz/corpus/datagram/
"""
import base64, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def write(target, name, data, base=HERE):
    d = os.path.join(base, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def frame(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    """A client-to-server WebSocket frame (RFC 6455 §5.2), masked."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def text(msg):
    return frame(1, json.dumps(msg).encode())

JOIN = {"type": "join", "room": "fuzz-room", "profile": "{}", "room_tag": "A" * 22}

def ws_frames():
    offer = text({"type": "offer", "sdp": "v=0\r\n"})
    mls = text({"type": "mls", "envelope": "AQQ"})
    body = json.dumps({"type": "ping", "id": 5}).encode()
    fragmented = frame(1, body[:7], fin=False) + frame(9, b"hi") + frame(0, body[7:15], fin=False) + frame(0, body[15:])
    seeds = {
        "join-offer-close": (0x00, 1, text(JOIN) + offer + mls + frame(8, b"\x03\xe8")),
        "fragments-ping": (0x00, 2, text(JOIN) + fragmented + frame(10, b"") + frame(2, b"\x00\x01")),
        "prejoin-ping-bad": (0x01, 3, text({"type": "ping", "id": 1}) + frame(1, b"{nope") + frame(1, b"\xff\xfe")),
        "too-large-prejoin": (0x01, 4, frame(1, b"x" * 200)),
        "budgets": (0x16, 5, text(JOIN) + frame(1, b"y" * 1000, fin=False) + frame(0, b"z" * 1000)),
        "join-refused": (0x80, 6, text(JOIN) + text(JOIN) + offer),
        "announced-huge": (0x00, 7, b"\x81\xff" + struct.pack(">Q", 1 << 40) + b"\x00" * 4 + b"a" * 50),
    }
    for name, (flags, seed, stream) in seeds.items():
        write("ws_frames", name, bytes([flags, seed]) + stream)

def ice_tcp():
    stun = bytes.fromhex("000100002112a442") + b"\x00" * 12
    write("ice_tcp", "stun-then-partial", b"\x07" + struct.pack(">H", len(stun)) + stun + b"\x00\x10abc")
    write("ice_tcp", "empty-and-max", b"\x03" + b"\x00\x00" + b"\xff\xff" + b"q" * 100)

def ds_messages():
    # who | what << 3; see fuzz_targets/ds_messages.rs.
    J, GM, JR, C, APP, T = 0, 6, 10, 16, 22, 30
    op = lambda who, what: bytes([who | what << 3])
    steps = (op(0, J) + op(1, J) + op(1, JR) + b"\x01" + op(0, GM) + b"\x00" + op(0, C) + b"\x00\x01"
             + op(1, GM) + b"\x01" + op(1, APP) + op(2, J) + op(2, JR) + b"\x02" + op(1, C) + b"\x01\x02"
             + op(0, C) + b"\x01\x02" + op(0, 4) + op(1, T) + b"\x10" + op(3, J) + op(4, J) + op(3, JR) + b"\x03")
    write("ds_messages", "two-rooms", steps)

def datagram():
    base = os.path.join(HERE, "..", "..", "plenary-sfu", "fuzz")
    vp8_key = bytes([0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00, 0x07]) + b"\x00" * 20
    stun = bytes.fromhex("000100002112a442") + b"\x00" * 12
    rtp = bytes([0x80, 0x60, 0, 1, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78]) + b"\x00" * 20
    rtcp = bytes([0x81, 0xc9, 0, 7]) + b"\x00" * 28
    dtls = bytes([0x16, 0xfe, 0xfd]) + b"\x00" * 10
    steps = (bytes([0, len(stun)]) + stun + bytes([6 + 0, len(rtp)]) + rtp + bytes([1, len(rtcp)]) + rtcp
             + bytes([2, len(dtls)]) + dtls + bytes([3, len(vp8_key)]) + vp8_key + bytes([10, 3]) + b"\xfc\xff\xfe"
             + bytes([5, 100]))
    write("datagram", "mixed", steps, base)

def ws_handshake():
    # Method byte, then header lines: 0 Connection, 1 Upgrade, 2 Version, 3 Key.
    write("ws_handshake", "good", b"\x00\x00Upgrade\n\x01websocket\n\x0213\n\x03dGhlIHNhbXBsZSBub25jZQ==")
    write("ws_handshake", "bad", b"\x01\x00upgrade, keep-alive\n\x01WebSocket\n\x028\n"
          b"\x03dGhlIHNhbXBsZSBub25jZQ=\n\x03AAAAAAAAAAAAAAAAAAAAAA==")

if __name__ == "__main__":
    ws_frames(); ws_handshake(); ice_tcp(); ds_messages(); datagram()
