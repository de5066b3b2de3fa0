#!/usr/bin/env python3
"""A two-port layer-2 link emulator: what `tc netem` + `tbf` would do, in user space.

Why it exists: issue 11's test bed wants netem link profiles (LAN, datacenter, WAN), but the kernel
this project is tested on has no sch_netem and no sch_fq (only HTB, TBF and ingress), and no
tcpdump. So the test bed (test/support/netns.ts) puts a third network namespace between the two
hosts' namespaces, joined to each by a veth pair, and runs this program there. It bridges the two
veths at layer 2 with AF_PACKET raw sockets and applies, per direction:

  loss     each frame is dropped with probability --loss (netem `loss`);
  queue    tail drop when the bytes waiting to be serialized, plus this frame, exceed --queue-bytes
           (a byte FIFO in front of a token bucket: tbf `limit`);
  rate     departure = max(arrival, previous departure) + wire size / --rate (serialization);
  delay    delivery = departure + --delay-ms (netem `delay`, one way; RTT = 2 x delay).

With PACKET_VNET_HDR on both sockets, GSO super-packets (up to 64 KiB of TCP segments) cross intact
with their offload metadata, which is what makes Linux-speed rates possible in Python; a super-packet
is charged what its segments would cost on the wire (each segment carries the headers again). Loss
applies per frame, so the test bed sets `gso_max_segs 1` on the hosts' link devices for profiles
with loss: one frame is then one MSS segment, as on a real WAN.

  --pcap FILE writes every forwarded frame (Ethernet, without the vnet header) to a standard pcap at
  its delivery time: the packet capture on the veth, since there is no tcpdump. Frames sent with
  checksum offload show a partial TCP checksum, as in any capture taken on the sending host.

Output (stdout, one JSON object per line): {"ready": ...} once both sockets are bound; the
counters on SIGUSR1 (which also flushes the pcap); the counters again as the last line on
SIGTERM or SIGINT, after which it exits 0. It dies with its parent (PR_SET_PDEATHSIG).

  link-shaper.py --a DEV --b DEV [--rate BYTES_PER_S] [--delay-ms D] [--loss P] [--queue-bytes N]
                 [--pcap FILE] [--seed S] [--wake-early-us U]

Timing: a frame's arrival is the kernel's receive timestamp (SO_TIMESTAMPNS), not when this process
woke, and the loop stops sleeping --wake-early-us (or a twentieth of the delay, if more) before a
delivery and polls the rest of the way;
what remains is about 0.1 ms per crossing on a 2-core VM (measured: a 0.5 ms-RTT profile gives a
TCP round trip of 0.6-0.7 ms, a bare veth pair 0.04-0.09 ms).
"""
import argparse
import collections
import ctypes
import json
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 3
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_TIMESTAMPNS = 35
VNET_HDR = struct.Struct('<BBHHHH')  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET_HDR.size  # 10
GSO_TCPV4, GSO_TCPV6 = 1, 4
PCAP_SNAPLEN = 262144


# The oldest kernel receive stamp believed (seconds): older means a stamp on another clock.
MAX_STAMP_AGE = 0.05

def open_port(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not what we send out of this port
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # when the kernel received each frame
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((dev, 0))
    s.setblocking(False)
    return s


def wire_bytes(frame):
    """The bytes a frame occupies on the link: a GSO super-packet as the segments it stands for."""
    _, gso_type, hdr_len, gso_size, _, _ = VNET_HDR.unpack_from(frame)
    size = len(frame) - VNET_LEN
    gso_type &= 0x7f  # without the ECN bit
    if gso_type == 0 or gso_size == 0:
        return size
    if gso_type in (GSO_TCPV4, GSO_TCPV6):  # headers: Ethernet + IP + TCP, read from the frame
        e = VNET_LEN + 14
        ip_len = (frame[e] & 0x0f) * 4 if gso_type == GSO_TCPV4 else 40
        hdr_len = 14 + ip_len + (frame[e + ip_len + 12] >> 4) * 4
    segments = max(1, -(-(size - hdr_len) // gso_size))
    return size + (segments - 1) * hdr_len


class Direction:
    def __init__(self, name, src, out, args):
        self.name, self.src, self.out = name, src, out
        self.rate, self.delay, self.loss, self.limit = args.rate, args.delay_ms / 1000, args.loss, args.queue_bytes
        self.line = collections.deque()  # (delivery time, frame), in delivery order
        self.busy = 0.0  # when the link finishes serializing what it has accepted
        self.blocked = False  # the last send would have blocked: wait until `out` is writable
        self.c = dict(frames=0, bytes=0, wire_bytes=0, lost=0, queue_drops=0, send_errors=0, kernel_drops=0)

    def arrive(self, frame, now):
        if self.loss and random.random() < self.loss:
            self.c['lost'] += 1
            return
        size = wire_bytes(frame)
        if self.rate:
            backlog = max(0.0, self.busy - now) * self.rate
            if backlog + size > self.limit:
                self.c['queue_drops'] += 1
                return
            self.busy = max(now, self.busy) + size / self.rate
        else:
            self.busy = now
        self.line.append((self.busy + self.delay, frame, size))

    def deliver(self, now, pcap):
        while self.line and self.line[0][0] <= now:
            _, frame, size = self.line[0]
            try:
                self.out.send(frame)
            except BlockingIOError:
                self.blocked = True
                return
            except OSError:  # the far end is down (a pulled cable): the frame is lost
                self.c['send_errors'] += 1
            else:
                self.c['frames'] += 1
                self.c['bytes'] += len(frame) - VNET_LEN
                self.c['wire_bytes'] += size
                if pcap:
                    pcap.write(frame)
            self.line.popleft()
        self.blocked = False

    def kernel_stats(self):
        # struct tpacket_stats { unsigned tp_packets, tp_drops; }: read-and-reset, so accumulate.
        _, drops = struct.unpack('II', self.src.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.c['kernel_drops'] += drops


class Pcap:
    def __init__(self, path):
        self.f = open(path, 'wb', buffering=1 << 20)
        self.f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, PCAP_SNAPLEN, 1))  # linktype 1: Ethernet

    def write(self, frame):
        t = time.time()
        n = len(frame) - VNET_LEN
        self.f.write(struct.pack('<IIII', int(t), int((t % 1) * 1e6), n, n))
        self.f.write(memoryview(frame)[VNET_LEN:])

    def flush(self):
        self.f.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--a', required=True, help='one port (a network device)')
    ap.add_argument('--b', required=True, help='the other port')
    ap.add_argument('--rate', type=float, default=0, help='bytes per second each way; 0 = unlimited')
    ap.add_argument('--delay-ms', type=float, default=0, help='one-way delay in milliseconds')
    ap.add_argument('--loss', type=float, default=0, help='probability (0..1) that a frame is dropped, each way')
    ap.add_argument('--queue-bytes', type=int, default=1 << 20, help='tail-drop limit of the bytes waiting to be serialized')
    ap.add_argument('--pcap', help='write every forwarded frame to this pcap file')
    ap.add_argument('--seed', type=int, help='seed for the loss decisions')
    ap.add_argument('--wake-early-us', type=float, default=100, help='stop sleeping this long (at least) before a delivery is due, and poll (timer wake-ups come late)')
    args = ap.parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the process that started us
        libc.prctl(29, 1)  # PR_SET_TIMERSLACK 1 ns: wake on time (the default slack is 50 us, a LAN's whole delay)
    except (OSError, AttributeError):
        pass
    sa, sb = open_port(args.a), open_port(args.b)
    dirs = [Direction('a_to_b', sa, sb, args), Direction('b_to_a', sb, sa, args)]
    by_fd = {d.src.fileno(): d for d in dirs}
    pcap = Pcap(args.pcap) if args.pcap else None
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    flags = set()
    for sig, flag in ((signal.SIGTERM, 'stop'), (signal.SIGINT, 'stop'), (signal.SIGUSR1, 'report')):
        signal.signal(sig, lambda _s, _f, flag=flag: flags.add(flag))

    def report(event):
        for d in dirs:
            d.kernel_stats()
        if pcap:
            pcap.flush()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = {'event': event, 'devices': {'a': args.a, 'b': args.b}, 'cpu_s': round(ru.ru_utime + ru.ru_stime, 3)}
        out.update({d.name: d.c for d in dirs})
        print(json.dumps(out), flush=True)

    print(json.dumps({'ready': True, 'pid': os.getpid(), 'a': args.a, 'b': args.b}), flush=True)
    # Longer sleeps wake later (an idle VM's vCPU halts): a twentieth of the delay, if that is more.
    early = max(args.wake_early_us / 1e6, args.delay_ms / 1000 / 20)
    buf = bytearray(PCAP_SNAPLEN)
    view = memoryview(buf)
    while 'stop' not in flags:
        if 'report' in flags:
            flags.discard('report')
            report('counters')
        now = time.monotonic()
        due = [d.line[0][0] for d in dirs if d.line and not d.blocked]
        # Wake early before a delivery and poll the rest of the way: a sleeping process wakes tens
        # of microseconds late, which is most of a LAN's delay.
        timeout = max(0.0, min(due) - now - early) if due else None
        # select(): its timeout has microsecond resolution (poll's and epoll's are milliseconds).
        readable, writable, _ = select.select([sa, sb, wake_r], [d.out for d in dirs if d.blocked], [], timeout)
        for s in readable:
            if s is wake_r:
                try:
                    wake_r.recv(64)
                except BlockingIOError:
                    pass
                continue
            d = by_fd[s.fileno()]
            clock = time.time() - time.monotonic()
            for _ in range(64):  # at most this many frames from one port before serving the other
                try:
                    n, anc, _, _ = s.recvmsg_into([buf], 64)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ENETDOWN while a port's device is down
                    break
                if n <= VNET_LEN:
                    continue
                # The frame arrived when the kernel received it, not when this process woke up.
                now = time.monotonic()
                at = now
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack('qq', data)
                        stamped = sec + nsec * 1e-9 - clock
                        # Only a recent wall-clock stamp counts: a frame TCP paced (an earliest
                        # departure time, on another clock) would otherwise skip its delay.
                        if now - MAX_STAMP_AGE <= stamped <= now:
                            at = stamped
                d.arrive(bytes(view[:n]), at)
        now = time.monotonic()
        for d in dirs:
            if not d.blocked or d.out in writable:
                d.deliver(now, pcap)
    report('final')
    return 0


if __name__ == '__main__':
    sys.exit(main())
