# Records the TCP payloads to and from the given ports on an interface (default lo) until
# SIGTERM, into a file: a packet capture (AF_PACKET, needs root) without tcpdump, for the YARN
# security test's "what crosses the network between the ApplicationMaster and the NodeManagers".
# usage: python3 sniff.py OUT PORT[,PORT...] [IFACE]
import os
import signal
import socket
import struct
import sys

out, ports = sys.argv[1], {int(p) for p in sys.argv[2].split(",") if p}
iface = sys.argv[3] if len(sys.argv) > 3 else "lo"
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((iface, 0))
s.settimeout(0.2)
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
with open(out + ".part", "wb") as f:
    open(out + ".ready", "w").close()
    while not stop:
        try:
            frame = s.recv(65600)
        except socket.timeout:
            continue
        ip = frame[14:]
        if frame[12:14] == b"\x08\x00" and len(ip) >= 20 and ip[9] == 6:  # IPv4, TCP
            tcp = ip[(ip[0] & 0x0F) * 4 : struct.unpack("!H", ip[2:4])[0]]
        elif frame[12:14] == b"\x86\xdd" and len(ip) >= 40 and ip[6] == 6:  # IPv6, TCP, no extension headers
            tcp = ip[40 : 40 + struct.unpack("!H", ip[4:6])[0]]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport = struct.unpack("!HH", tcp[:4])
        if sport in ports or dport in ports:
            f.write(tcp[(tcp[12] >> 4) * 4:])
            f.flush()
os.rename(out + ".part", out)
