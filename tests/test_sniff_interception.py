"""Live detection: ``tlsprobe sniff`` in the client namespace of the interception lab
while the lab's middlebox (tools/lab/programs/middlebox.py, in the router namespace)
injects resets shaped like the GFW's for one SNI.  The verdict must come out of the
live capture, while it runs, and equal what ``analyze`` says about the pcap that
``sniff -w`` wrote.

Needs root, ``ip`` and ``openssl``; skips otherwise (CI runs it).
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_sniff import REASON as SNIFF_REASON
from tests.test_sniff import Sniffer
from tlsprobe import iter_records

LAB = Path(__file__).resolve().parents[1] / "tools" / "lab"
sys.path.insert(0, str(LAB))

import make_interception_pcaps as mip  # noqa: E402
from netns import CLIENT_NS, ROUTER_NS, SERVER_NS, SERVER_V4, Lab, existing_namespaces  # noqa: E402


def _why_not() -> str | None:
    if SNIFF_REASON:
        return SNIFF_REASON
    busy = existing_namespaces() & {CLIENT_NS, ROUTER_NS, SERVER_NS}
    if busy:
        return f"lab namespaces already in use: {' '.join(sorted(busy))} (python3 tools/lab/netns.py down)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
PORT = 8443


class _LabNet:
    """What :class:`tests.test_sniff.Sniffer` needs: a client namespace to spawn in."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.client = CLIENT_NS
        self.tmp = tmp
        self.procs: list[subprocess.Popen[Any]] = []

    def spawn(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = self.lab.spawn_in(ns, cmd, **kw)
        self.procs.append(proc)
        return proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path, mip.MiddleboxProc]]:
    tmp = tmp_path_factory.mktemp("livelab")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={mip.ALLOWED}"],
                   check=True, capture_output=True)
    with Lab() as lab:
        lab.sysctl(ROUTER_NS, "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
        mbox = mip.MiddleboxProc(lab, tmp / "rules.json", tmp / "middlebox.log")
        mbox.load(mip.gfw_rule(PORT, random.Random(7)), local_ports=[])
        lab.spawn_in(SERVER_NS, ["openssl", "s_server", "-accept", str(PORT), "-cert", str(cert), "-key", str(key),
                                 "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.wait_for_listen(SERVER_NS, PORT)
        yield lab, tmp, mbox


def _client(lab: Lab, sni: str) -> None:
    lab.run_in(CLIENT_NS, ["curl", "-sk", "--max-time", "5", "--resolve", f"{sni}:{PORT}:{SERVER_V4}",
                           f"https://{sni}:{PORT}/", "-o", "/dev/null"], check=False, timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_live_verdicts_equal_offline_ones(lab: tuple[Lab, Path, mip.MiddleboxProc]) -> None:
    the_lab, tmp, mbox = lab
    written = tmp / "live.pcap"
    sniff = Sniffer(_LabNet(the_lab, tmp), ["-i", "eth0", "-F", "jsonl", "-w", str(written), "tcp"])  # type: ignore[arg-type]
    _client(the_lab, mip.ALLOWED)
    allowed = sniff.records(1)[0]
    _client(the_lab, mip.BLOCKED)
    mbox.wait_event("inject")
    blocked = sniff.records(1)[0]  # while the capture still runs
    rc, rest, err = sniff.finish(signal.SIGINT)
    assert rc == 0 and rest == [], err

    assert allowed["sni"] == mip.ALLOWED and allowed["outcome"] == "server_hello"
    assert allowed["interception"] is None
    assert blocked["sni"] == mip.BLOCKED and blocked["outcome"] == "rst"
    verdict = blocked["interception"]
    assert verdict is not None and verdict["pattern"] == "rst_injection", blocked["evidence"]
    assert blocked["evidence"]["rst_count"] >= 1, blocked["evidence"]

    offline = {d["sni"]: d for d in (r.to_dict() for r in iter_records([str(written)]))}
    assert offline[mip.BLOCKED]["interception"] == verdict
    assert offline[mip.ALLOWED]["interception"] is None
    assert offline[mip.BLOCKED]["outcome"] == "rst"
