// The two ends of measureLink() (netns.ts), each run inside a host's namespace:
//
//   node --import tsx test/support/link-probe.ts serve PORT
//     counts what a connection sends and answers the count when it ends; a connection whose
//     first byte is 'E' is echoed instead. Prints {"listening":true} once it listens.
//   node --import tsx test/support/link-probe.ts probe HOST PORT BYTES ECHOES
//     sends BYTES and times them (to the count's answer), then ECHOES round trips of 32 bytes,
//     2 ms apart, with Nagle off. Prints {"bytesPerSecond", "seconds", "rttMs": {p50, p90, min}}.
import net from 'node:net';

function serve(port: number): void {
  net.createServer((s) => {
    s.setNoDelay(true);
    let mode: 'sink' | 'echo' | undefined;
    let n = 0;
    s.on('data', (d: Buffer) => {
      if (mode === undefined) {
        mode = d[0] === 0x45 ? 'echo' : 'sink';
        d = d.subarray(1);
      }
      if (mode === 'echo') s.write(d);
      else n += d.length;
    });
    s.on('end', () => (mode === 'sink' ? s.end(`${n}\n`) : s.end()));
    s.on('error', () => undefined);
  }).listen(port, '0.0.0.0', () => process.stdout.write('{"listening":true}\n'));
}

async function probe(host: string, port: number, bytes: number, echoes: number): Promise<void> {
  const t0 = performance.now();
  const got = await new Promise<number>((resolve, reject) => {
    const s = net.connect(port, host);
    s.on('error', reject);
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    let sent = 0;
    let answer = '';
    const pump = () => {
      while (sent < bytes) {
        const part = sent + chunk.length <= bytes ? chunk : chunk.subarray(0, bytes - sent);
        sent += part.length;
        if (!s.write(part)) return;
      }
      s.end();
    };
    s.once('connect', () => {
      s.write('T');
      s.on('drain', pump);
      pump();
    });
    s.on('data', (d: Buffer) => { answer += d.toString(); });
    s.on('end', () => resolve(Number(answer.trim())));
  });
  const seconds = (performance.now() - t0) / 1000;
  if (got !== bytes) throw new Error(`the sink counted ${got} bytes of ${bytes}`);
  const rtts: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, host);
    s.setNoDelay(true);
    s.on('error', reject);
    let t = 0;
    let have = 0;
    const ping = () => {
      have = 0;
      t = performance.now();
      s.write(Buffer.alloc(32, 0x78));
    };
    s.once('connect', () => {
      s.write('E');
      ping();
    });
    s.on('data', (d: Buffer) => {
      have += d.length;
      if (have < 32) return;
      rtts.push(performance.now() - t);
      if (rtts.length < echoes) setTimeout(ping, 2);
      else {
        s.end();
        resolve();
      }
    });
  });
  rtts.sort((x, y) => x - y);
  const at = (q: number) => rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * q))]!;
  process.stdout.write(`${JSON.stringify({ bytesPerSecond: bytes / seconds, seconds, rttMs: { p50: at(0.5), p90: at(0.9), min: rtts[0] } })}\n`);
  process.exit(0);
}

const [role, ...a] = process.argv.slice(2);
if (role === 'serve') serve(Number(a[0]));
else if (role === 'probe') await probe(a[0]!, Number(a[1]), Number(a[2]), Number(a[3]));
else {
  process.stderr.write('usage: link-probe.ts serve PORT | probe HOST PORT BYTES ECHOES\n');
  process.exit(2);
}
