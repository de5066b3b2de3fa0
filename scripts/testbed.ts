/**
 * Two machines on one box, by hand: the test bed of test/migration/link-profiles.test.ts (built by
 * test/support/netns.ts) with a Ferry host in each namespace, for a reviewer to drive.
 *
 *   npx tsx scripts/testbed.ts up [--profile lan|datacenter|wan|none] [--tls DIR] [--pcap FILE] [--port N]
 *   npx tsx scripts/testbed.ts measure [--profile P[,P...]]
 *
 * `up` builds the bed (default profile: wan), starts `ferry host start` in each host namespace and
 * prints how to reach each host, how to migrate, and where the capture and the logs are; Ctrl-C
 * (or SIGTERM) stops the hosts and the shaper and deletes every namespace and link. With
 * `--tls DIR` the hosts speak wss:// with mutual TLS (certificates made in DIR by
 * scripts/make-certs.sh, kept afterwards); without it, plain ws:// with a cluster token (a host off
 * loopback needs one), which is what a capture can read guest memory from.
 * `measure` checks what each profile's link does: a 3-second TCP transfer and 200 small TCP round
 * trips between the namespaces (`none`: a veth pair without the shaper, for comparison), with
 * test/support/link-probe.ts at both ends.
 * Needs root, `ip` and python3 (and openssl for --tls).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createTestbed, LINK_PROFILES, measureLink, netnsUnavailable, startHostIn, stopHostIn, type LinkProfileName, type NetnsHost, type Testbed,
} from '../test/support/netns.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
type ProfileArg = LinkProfileName | 'none';

function usage(): never {
  process.stderr.write('usage: npx tsx scripts/testbed.ts up [--profile lan|datacenter|wan|none] [--tls DIR] [--pcap FILE] [--port N]\n'
    + '       npx tsx scripts/testbed.ts measure [--profile P[,P...]]\n');
  process.exit(2);
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) usage();
  return v;
}

function profileOf(p: string): ProfileArg {
  if (p !== 'none' && !(p in LINK_PROFILES)) usage();
  return p as ProfileArg;
}

function describeProfile(p: ProfileArg): string {
  return p === 'none' ? 'none (a veth pair, no shaper)' : `${p} (${LINK_PROFILES[p].summary})`;
}

function bedOrExit(profile: ProfileArg): void {
  const why = netnsUnavailable({ shaper: profile !== 'none' });
  if (why) {
    process.stderr.write(`testbed: cannot build the bed: ${why}\n`);
    process.exit(1);
  }
}

async function up(args: string[]): Promise<void> {
  const profile = profileOf(option(args, '--profile') ?? 'wan');
  const tlsDir = option(args, '--tls');
  const pcapArg = option(args, '--pcap');
  const pcap = pcapArg === undefined ? undefined : resolve(pcapArg);
  const port = Number(option(args, '--port') ?? 7400);
  if (pcap && profile === 'none') {
    process.stderr.write('testbed: --pcap needs a profile (the shaper writes the capture)\n');
    process.exit(2);
  }
  bedOrExit(profile);
  const work = mkdtempSync(join(tmpdir(), 'ferry-testbed-'));
  const bed: Testbed = await createTestbed({
    ...(profile !== 'none' ? { profile } : {}), ...(pcap ? { pcap } : {}),
    onCounters: (c) => process.stdout.write(`testbed: link counters ${JSON.stringify(c)}\n`),
  });
  const { a, b } = bed;
  let stopping = false;
  const down = async (code: number) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\ntestbed: stopping the hosts, the shaper, and deleting the namespaces...\n');
    await Promise.all([stopHostIn(a), stopHostIn(b)]);
    const counters = await bed.teardown();
    if (counters) process.stdout.write(`testbed: link counters ${JSON.stringify(counters)}\n`);
    if (pcap) process.stdout.write(`testbed: the capture stays in ${pcap}\n`);
    rmSync(join(work, 'token'), { force: true });
    process.stdout.write(`testbed: the hosts' logs stay in ${work}\n`);
    process.exit(code);
  };
  process.on('SIGINT', () => void down(0));
  process.on('SIGTERM', () => void down(0));
  try {
    const scheme = tlsDir ? 'wss' : 'ws';
    let hostArgs: (h: NetnsHost) => string[];
    let clientEnv: string;
    if (tlsDir) {
      execFileSync(join(ROOT, 'scripts', 'make-certs.sh'), [tlsDir, `a=${a.linkAddr},${a.controlAddr}`, `b=${b.linkAddr},${b.controlAddr}`, 'operator=127.0.0.1'], { stdio: 'ignore' });
      const dir = resolve(tlsDir);
      hostArgs = (h) => ['--tls-cert', join(dir, `${h.name}.pem`), '--tls-key', join(dir, `${h.name}-key.pem`), '--tls-ca', join(dir, 'ca.pem'),
        ...(h.name === 'b' ? ['--tls-allow', 'a'] : [])];
      clientEnv = `export FERRY_TLS_CA=${dir}/ca.pem FERRY_TLS_CERT=${dir}/operator.pem FERRY_TLS_KEY=${dir}/operator-key.pem`;
    } else {
      const token = join(work, 'token');
      writeFileSync(token, `${randomBytes(16).toString('hex')}\n`);
      chmodSync(token, 0o600);
      hostArgs = () => ['--token-file', token];
      clientEnv = `export FERRY_TOKEN=$(cat ${token})`;
    }
    await Promise.all([a, b].map((h) => startHostIn(h, ['--listen', `0.0.0.0:${port}`, '--advertise', `${scheme}://${h.linkAddr}:${port}`, ...hostArgs(h)])));
    for (const h of [a, b]) {
      const log = join(work, `${h.name}.log`);
      writeFileSync(log, h.stderr);
      h.proc!.stderr!.on('data', (d: Buffer) => appendFileSync(log, d));
      h.proc!.on('exit', (code) => {
        if (stopping) return;
        process.stderr.write(`testbed: host ${h.name} exited (${code}); its log: ${log}\n`);
        void down(1);
      });
    }
    const cli = `node --import tsx ${join(ROOT, 'src', 'cli.ts')}`;
    process.stdout.write([
      `Ferry test bed up: link ${describeProfile(profile)}`,
      ...(bed.shaper ? [`  the link: scripts/link-shaper.py (pid ${bed.shaper.pid}) in namespace ${bed.wireNs}, between ${bed.linkDev.a} (host a) and ${bed.linkDev.b} (host b)`] : []),
      ...[a, b].map((h) => `  host ${h.name}: namespace ${h.ns}; from here ${scheme}://${h.controlAddr}:${port}; from the other host ${scheme}://${h.linkAddr}:${port}; log ${join(work, `${h.name}.log`)}`),
      '',
      'In another shell (the root namespace reaches both hosts on their control addresses):',
      `  ${clientEnv}`,
      `  A="${cli} --host ${scheme}://${a.controlAddr}:${port}"; B="${cli} --host ${scheme}://${b.controlAddr}:${port}"`,
      '  $A vm create m1 --program memstress --memory 64M --icount --insn-limit 3000000000 --arg ws_mib=16 --start',
      `  $A migrate m1 --to ${scheme}://${b.linkAddr}:${port} --json          # or --mode postcopy, --max-bandwidth 4000000, ...`,
      '  $B vm info m1',
      `  ip netns exec ${a.ns} bash                                    # a shell on host a's side of the link`,
      ...(pcap ? [`Capture: ${pcap} (every frame on the link, pcap/Ethernet; \`kill -USR1 ${bed.shaper!.pid}\` flushes it and prints the link's counters here)`] : []),
      'Ctrl-C tears it all down.',
      '',
    ].join('\n'));
  } catch (e) {
    process.stderr.write(`testbed: ${(e as Error).message}\n`);
    await down(1);
  }
}

async function measure(args: string[]): Promise<void> {
  const profiles = (option(args, '--profile') ?? 'none,lan,datacenter,wan').split(',').map(profileOf);
  for (const p of profiles) {
    bedOrExit(p);
    const bed = await createTestbed(p === 'none' ? {} : { profile: p });
    try {
      const bytes = Math.round((p === 'none' ? 2e9 : LINK_PROFILES[p].rate) * 3);
      const m = await measureLink(bed, { bytes, echoes: 200 });
      process.stdout.write(`${describeProfile(p)}: TCP ${(m.bytesPerSecond / 1e6).toFixed(1)} MB/s = ${(m.bytesPerSecond * 8 / 1e6).toFixed(0)} Mbit/s of goodput `
        + `(${bytes} bytes in ${m.seconds.toFixed(2)} s); TCP round trip p50 ${m.rttMs.p50.toFixed(3)} ms, p90 ${m.rttMs.p90.toFixed(3)} ms, min ${m.rttMs.min.toFixed(3)} ms\n`);
    } finally {
      const c = await bed.teardown();
      if (c) process.stdout.write(`  link counters ${JSON.stringify(c)}\n`);
    }
  }
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'up') await up(rest);
else if (cmd === 'measure') await measure(rest);
else usage();
