"""UDP traffic for the control-plane and fault tests: a bounded sender and a
receiver run in namespaces, and a pair of UDP tunnel pumps over a World."""
import json
import os
import sys

from tunpump import Pump, UDPEndpoint

UDP_SEND = """
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('', int(sys.argv[4]) if len(sys.argv) > 4 else 0))
for i in range(count):
    s.sendto(str(i).encode(), (host, port))
"""

UDP_RECV = """
import json, os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
os.write(int(sys.argv[3]), b'r'); os.close(int(sys.argv[3]))
got = []
try:
    while True:
        got.append(int(s.recv(100)))
except socket.timeout:
    pass
print(json.dumps(got))
"""


def udp_receiver(ns, n, port, idle=1.5):
    r, w = os.pipe()
    p = ns.python(n, "-c", UDP_RECV, str(port), str(idle), str(w), pass_fds=(w,))
    os.close(w)
    os.read(r, 1)
    os.close(r)
    return p


def udp_send(ns, n, host, port, count, sport=None):
    args = [sys.executable, "-c", UDP_SEND, host, str(port), str(count)] + ([str(sport)] if sport else [])
    r = ns.run(n, *args)
    assert r.returncode == 0, r.stderr


def received(p):
    out, err = p.communicate(timeout=20)
    return json.loads(out)


def udp_pumps(w, **kw):
    e1 = UDPEndpoint(("198.18.10.1", 6600), ("198.18.10.2", 6600), netns=w.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6600), ("198.18.10.1", 6600), netns=w.n2)
    return Pump(w.a, e1, **kw), Pump(w.b, e2)
