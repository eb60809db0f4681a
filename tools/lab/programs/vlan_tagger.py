"""Put one interface's traffic on an 802.1Q VLAN or a QinQ (802.1ad + 802.1Q) link.

This kernel is built without ``CONFIG_VLAN_8021Q`` (so ``ip link add ... type vlan``
fails) and without bridge VLAN filtering, so the tags are added the way an
eBPF-programmable NIC or a tc-based switch would do it: two tiny eBPF programs,
attached with tcx (Linux >= 6.6) to the interface given on the command line, in the
namespace this process runs in:

* egress: ``bpf_skb_vlan_push()`` once per tag (innermost first), so every frame
  the kernel sends through the interface leaves with the tags, outer first as given;
* ingress: ``bpf_skb_vlan_pop()`` once per tag, so tagged frames from the peer are
  accepted as if they came through a VLAN sub-interface.

The packets are still the kernel's own: the programs only ask the kernel's VLAN code
(``skb_vlan_push``/``skb_vlan_pop``, the same code ``act_vlan`` and Open vSwitch use)
to insert or remove tags. Nothing is pinned; the links go away when this process
exits, so stopping it (by PID) restores the untagged link. Stdlib only::

    ip netns exec tp-client python3 vlan_tagger.py --iface eth0 --tag 0x88a8:200 --tag 0x8100:300

prints ``ready`` once both programs are attached and then waits for SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import signal
import socket
import struct
import sys

_NR_BPF = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_FUNC_SKB_VLAN_PUSH = 18
BPF_FUNC_SKB_VLAN_POP = 19
TCX_PASS = 0
ATTR_SIZE = 128

_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: bytes) -> int:
    """Issue the ``bpf(2)`` system call with a zero-padded ``union bpf_attr``."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(f"bpf syscall number unknown for {platform.machine()}")
    buf = ctypes.create_string_buffer(attr.ljust(ATTR_SIZE, b"\0"), ATTR_SIZE)
    ret = int(_libc.syscall(nr, cmd, buf, ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return ret


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """Encode one eBPF instruction (``struct bpf_insn``, little-endian)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


MOV64_REG, MOV64_IMM, CALL, EXIT = 0xBF, 0xB7, 0x85, 0x95


def push_program(tags: list[tuple[int, int]]) -> bytes:
    """Program that pushes ``tags`` (outer first) onto every frame, then passes it."""
    code = insn(MOV64_REG, dst=6, src=1)  # r6 = skb
    for tpid, vid in reversed(tags):  # innermost first: each push goes outside the last
        code += insn(MOV64_REG, dst=1, src=6)
        code += insn(MOV64_IMM, dst=2, imm=socket.htons(tpid))  # __be16 vlan_proto
        code += insn(MOV64_IMM, dst=3, imm=vid)
        code += insn(CALL, imm=BPF_FUNC_SKB_VLAN_PUSH)
    return code + insn(MOV64_IMM, dst=0, imm=TCX_PASS) + insn(EXIT)


def pop_program(count: int) -> bytes:
    """Program that pops up to ``count`` VLAN tags from every frame, then passes it."""
    code = insn(MOV64_REG, dst=6, src=1)
    for _ in range(count):
        code += insn(MOV64_REG, dst=1, src=6) + insn(CALL, imm=BPF_FUNC_SKB_VLAN_POP)
    return code + insn(MOV64_IMM, dst=0, imm=TCX_PASS) + insn(EXIT)


def load(code: bytes, name: bytes) -> int:
    """Load a SCHED_CLS program; return its fd (verifier log in the error)."""
    license_ = ctypes.create_string_buffer(b"GPL")
    insns = ctypes.create_string_buffer(code, len(code))
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "<IIQQIIQII16s",
        BPF_PROG_TYPE_SCHED_CLS,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,
        len(log),
        ctypes.addressof(log),
        0,
        0,
        name[:15],
    )
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        raise OSError(f"{exc}\nverifier: {log.value.decode(errors='replace')}") from exc


def attach(prog_fd: int, ifname: str, attach_type: int) -> int:
    """Attach with a tcx link (BPF_LINK_CREATE); return the link fd."""
    attr = struct.pack("<IIII", prog_fd, socket.if_nametoindex(ifname), attach_type, 0)
    return bpf(BPF_LINK_CREATE, attr)


def parse_tag(text: str) -> tuple[int, int]:
    """Parse ``TPID:VID`` such as ``0x8100:100`` or ``0x88a8:200``."""
    tpid, _, vid = text.partition(":")
    tag = (int(tpid, 0), int(vid, 0))
    if tag[0] not in (0x8100, 0x88A8) or not 1 <= tag[1] <= 4094:
        raise argparse.ArgumentTypeError(f"bad tag {text!r}: want 0x8100|0x88a8:1..4094")
    return tag


def main() -> int:
    """Attach push/pop programs to ``--iface`` and keep them until signalled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument(
        "--tag", type=parse_tag, action="append", required=True, help="TPID:VID, outer first (repeat for QinQ)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fds = [
        attach(load(push_program(args.tag), b"vlan_push"), args.iface, BPF_TCX_EGRESS),
        attach(load(pop_program(len(args.tag)), b"vlan_pop"), args.iface, BPF_TCX_INGRESS),
    ]
    tags = " ".join(f"{tpid:#06x}:{vid}" for tpid, vid in args.tag)
    print(f"ready {args.iface} {tags}", flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for fd in fds:
            os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
