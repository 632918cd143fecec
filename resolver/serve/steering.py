"""Each question to the worker that owns it: a classic BPF program on the UDP group.

With several workers, each has its own UDP socket on the port (SO_REUSEPORT). By
default the kernel picks a socket by the client's address and port, so the same name
asked by two clients lands in two workers, each with its own cache. This program,
attached with SO_ATTACH_REUSEPORT_CBPF, picks the socket by a hash of the question name
instead, folded to lowercase (names compare without case, and resolvers randomise it,
the "0x20" defence), so every question for a name reaches the same worker: one cache,
one stale copy, whoever asks. ``owner`` computes the same hash in Python, for the
questions that arrive over TCP (see ``serve.relay``).

The kernel runs the program on the UDP payload: the DNS message, whose question name
starts at offset 12. The hash covers the name's bytes up to its terminating zero, at
most ``HASHED_BYTES`` of them; a packet too short to hold them ends the program, which
then returns 0 (a malformed query, answered by worker 0).
"""

from __future__ import annotations

import ctypes
import socket
import struct

# Linux's SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h); not in Python's socket module.
SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)
HASHED_BYTES = 64
_MULTIPLIER = 31
_FOLD = 0x20  # ORed into every byte: "A" and "a" hash alike
_MASK32 = 0xFFFFFFFF

# Classic BPF opcodes (linux/filter.h).
_LD_IMM = 0x00  # A = k
_LDB_ABS = 0x30  # A = packet[k]
_ST = 0x02  # M[k] = A
_LD_MEM = 0x60  # A = M[k]
_OR_K = 0x44  # A |= k
_MUL_K = 0x24  # A *= k
_ADD_X = 0x0C  # A += X
_MOD_K = 0x94  # A %= k
_TAX = 0x07  # X = A
_JEQ_K = 0x15  # jump jt if A == k, else jf
_JA = 0x05  # jump k
_RET_A = 0x16

_INSTRUCTION = struct.Struct("=HBBI")


def owner(qname: bytes, workers: int) -> int:
    """The worker that owns a question name (lowercase wire form), as the kernel would
    steer its UDP query."""
    digest = 0
    for byte in qname[:HASHED_BYTES]:
        if byte == 0:
            break
        digest = (digest * _MULTIPLIER + (byte | _FOLD)) & _MASK32
    return digest % workers


def program(workers: int) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions."""
    code: list[tuple[int, int, int, int]] = [(_LD_IMM, 0, 0, 0), (_ST, 0, 0, 0)]
    per_byte = 10
    done = 2 + per_byte * HASHED_BYTES
    for index in range(HASHED_BYTES):
        here = len(code)
        code += [
            (_LDB_ABS, 0, 0, 12 + index),
            (_JEQ_K, 1, 0, 0),  # the zero label ends the name: skip to the exit jump
            (_JA, 0, 0, 1),  # not the end: skip the exit jump
            (_JA, 0, 0, done - (here + 4)),
            (_OR_K, 0, 0, _FOLD),
            (_TAX, 0, 0, 0),
            (_LD_MEM, 0, 0, 0),
            (_MUL_K, 0, 0, _MULTIPLIER),
            (_ADD_X, 0, 0, 0),
            (_ST, 0, 0, 0),
        ]
    code += [(_LD_MEM, 0, 0, 0), (_MOD_K, 0, 0, workers), (_RET_A, 0, 0, 0)]
    return code


def attach(sock: socket.socket, workers: int) -> None:
    """Attach the steering program to the reuseport group ``sock`` belongs to (one
    socket of the group is enough: the program is the group's)."""
    instructions = program(workers)
    buffer = ctypes.create_string_buffer(
        b"".join(_INSTRUCTION.pack(*instruction) for instruction in instructions)
    )
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(instructions), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
