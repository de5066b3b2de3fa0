// Reads a pcap (as scripts/link-shaper.py writes it: microsecond timestamps, Ethernet) and puts
// each TCP/IPv4 flow's payload back together in sequence order, so a search for a run of bytes
// does not miss it where TCP split it across segments.
import { readFileSync } from 'node:fs';

export interface TcpFlow {
  /** "10.77.1.1:40312>10.77.1.2:7400" */
  key: string;
  srcPort: number;
  dstPort: number;
  frames: number;
  /** The payload, in sequence order, each byte once (retransmissions dropped). */
  data: Buffer;
}

export interface PcapSummary {
  frames: number;
  bytes: number;
  flows: TcpFlow[];
}

export function readPcapFlows(file: string): PcapSummary {
  const f = readFileSync(file);
  if (f.length < 24 || f.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian microsecond pcap`);
  if (f.readUInt32LE(20) !== 1) throw new Error(`${file}: link type ${f.readUInt32LE(20)}, expected 1 (Ethernet)`);
  const segs = new Map<string, { srcPort: number; dstPort: number; frames: number; list: { seq: number; payload: Buffer }[] }>();
  let frames = 0;
  let bytes = 0;
  for (let off = 24; off + 16 <= f.length;) {
    const incl = f.readUInt32LE(off + 8);
    const frame = f.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    frames++;
    bytes += incl;
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) continue; // IPv4 only
    const ip = frame.subarray(14);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 6) continue; // TCP
    // A GSO super-packet's total length can be that of the whole packet, or 0 beyond 64 KiB.
    const total = ip.readUInt16BE(2);
    const ipEnd = total >= ihl ? Math.min(total, ip.length) : ip.length;
    const tcp = ip.subarray(ihl, ipEnd);
    const doff = (tcp[12]! >> 4) * 4;
    const payload = tcp.subarray(doff);
    const srcPort = tcp.readUInt16BE(0);
    const dstPort = tcp.readUInt16BE(2);
    const key = `${ip.subarray(12, 16).join('.')}:${srcPort}>${ip.subarray(16, 20).join('.')}:${dstPort}`;
    let s = segs.get(key);
    if (!s) segs.set(key, (s = { srcPort, dstPort, frames: 0, list: [] }));
    s.frames++;
    if (payload.length > 0) s.list.push({ seq: tcp.readUInt32BE(4), payload });
  }
  const flows: TcpFlow[] = [];
  for (const [key, s] of segs) {
    const ref = s.list[0]?.seq ?? 0;
    // Offsets from the first segment seen, across the 32-bit wrap (a flow here is far below 2 GiB).
    const list = s.list.map((x) => ({ at: (x.seq - ref) | 0, payload: x.payload })).sort((x, y) => x.at - y.at);
    const parts: Buffer[] = [];
    let cursor = list[0]?.at ?? 0;
    for (const x of list) {
      const end = x.at + x.payload.length;
      if (end <= cursor) continue; // a retransmission of what we have
      parts.push(x.payload.subarray(Math.max(0, cursor - x.at)));
      cursor = end;
    }
    flows.push({ key, srcPort: s.srcPort, dstPort: s.dstPort, frames: s.frames, data: Buffer.concat(parts) });
  }
  return { frames, bytes, flows };
}
