/**
 * vCPU throughput: MIPS for `sieve` (compute) and `memstress` (one store per page, the worst
 * case for dirty logging), each with dirty logging idle and with the host harvesting the log
 * every HARVEST_MS as pre-copy rounds would; what external interrupts cost (`platform`, an RTC
 * alarm through the PLIC every 1000 instructions, against the same guest with none); what PMP
 * costs U-mode (`usermode`'s code in U-mode, against the same code in M-mode); how long a
 * pause request takes to land; and the CPU an idle guest costs.
 * Prints one JSON object per line: { name, unit, value, ... }.
 *
 *   npx tsx bench/cpu.ts            (FERRY_BENCH_QUICK=1 for a short smoke run)
 */
import { loadProgram } from '../src/vm/programs.ts';
import { Vm } from '../src/vm/vm.ts';

const quick = process.env.FERRY_BENCH_QUICK === '1';
const HARVEST_MS = 20;

function emit(rec: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(rec)}\n`);
}

interface Run {
  mips: number;
  instret: number;
  seconds: number;
  syncs: number;
  dirtyPages: number;
}

/** Runs a guest in a worker VM to its instruction limit, optionally harvesting the dirty log. */
async function measure(program: string, args: string[], insns: number, harvestEveryMs: number): Promise<Run> {
  const { elf } = loadProgram(program);
  const vm = Vm.create({ elf, memory: 256 << 20, icount: true, insnLimit: insns, args });
  try {
    // Let the worker come up before the clock starts.
    await vm.step(1);
    let syncs = 0;
    let dirtyPages = 0;
    let harvesting = harvestEveryMs > 0;
    const harvester = (async () => {
      if (!harvesting) return;
      await vm.syncDirty();
      while (harvesting) {
        await new Promise((r) => setTimeout(r, harvestEveryMs));
        if (!harvesting) break;
        const pages = await vm.syncDirty();
        syncs++;
        dirtyPages += pages.length;
      }
    })();
    const t0 = performance.now();
    vm.start();
    await vm.waitHalted();
    const seconds = (performance.now() - t0) / 1000;
    harvesting = false;
    await harvester;
    const instret = vm.instret();
    return { mips: instret / seconds / 1e6, instret, seconds, syncs, dirtyPages };
  } finally {
    await vm.destroy();
  }
}

/** The median run by MIPS (runs vary by ±20 % here: two cores, JIT tiering, host page faults). */
function median(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.mips - b.mips);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The host CPU a guest costs while it waits in wfi (counter: for its timer; uartirq: for a keystroke's interrupt). */
async function idleCpuPercent(program = 'counter', args = ['period_ms=1000']): Promise<number> {
  const { elf } = loadProgram(program);
  const vm = Vm.create({ elf, args });
  try {
    vm.start();
    await new Promise<void>((resolve) => vm.once('console', () => resolve()));
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, quick ? 1000 : 3000));
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) / 1000 / (performance.now() - t0)) * 100;
  } finally {
    await vm.destroy();
  }
}

/** Time from a pause request to the vCPU's acknowledgement, while `sieve` runs flat out. */
async function pauseLatency(samples: number): Promise<{ p50: number; p99: number; max: number }> {
  const { elf } = loadProgram('sieve');
  const vm = Vm.create({ elf, args: ['n=4000000', 'reps=100000'] });
  try {
    await vm.step(1);
    vm.start();
    const lat: number[] = [];
    for (let i = 0; i < samples; i++) {
      await new Promise((r) => setTimeout(r, 5 + (i % 7)));
      const t0 = performance.now();
      await vm.pause();
      lat.push(performance.now() - t0);
      vm.resume();
    }
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
    return { p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1]! };
  } finally {
    await vm.destroy();
  }
}

async function main(): Promise<void> {
  const reps = quick ? 1 : 5;
  const sieveInsns = quick ? 60_000_000 : 400_000_000;
  const memInsns = quick ? 40_000_000 : 200_000_000;
  const cases: [string, string, string[], number][] = [
    ['sieve', 'sieve', ['n=4000000', 'reps=100'], sieveInsns],
    ['memstress-64MiB', 'memstress', ['ws_mib=64'], memInsns],
  ];
  for (const [name, prog, args, insns] of cases) {
    const off: Run[] = [];
    const on: Run[] = [];
    for (let i = 0; i < reps; i++) {
      off.push(await measure(prog, args, insns, 0));
      on.push(await measure(prog, args, insns, HARVEST_MS));
    }
    const a = median(off);
    const b = median(on);
    const spread = (rs: Run[]) => rs.map((r) => Math.round(r.mips));
    emit({ name: `${name}.mips`, unit: 'MIPS', value: round(a.mips), instret: a.instret, runs: spread(off) });
    emit({
      name: `${name}.mips-dirty-logging`, unit: 'MIPS', value: round(b.mips),
      runs: spread(on), harvestEveryMs: HARVEST_MS, syncs: b.syncs, dirtyPagesPerSync: b.syncs ? Math.round(b.dirtyPages / b.syncs) : 0,
    });
    emit({ name: `${name}.dirty-logging-overhead`, unit: '%', value: round(((a.mips - b.mips) / a.mips) * 100) });
  }
  // The same guest with an alarm every 100 µs of deterministic time (one interrupt per 1000
  // instructions: claim, clear, re-arm, complete) and with one every 4 s (none within the run).
  const irqInsns = quick ? 30_000_000 : 150_000_000;
  const busy: Run[] = [];
  const quiet: Run[] = [];
  for (let i = 0; i < reps; i++) {
    busy.push(await measure('platform', ['period_us=100', 'limit=0'], irqInsns, 0));
    quiet.push(await measure('platform', ['period_us=4000000', 'limit=0'], irqInsns, 0));
  }
  const withIrq = median(busy);
  const without = median(quiet);
  emit({ name: 'platform-interrupts.mips', unit: 'MIPS', value: round(withIrq.mips), interruptsPerSecond: Math.round((withIrq.mips * 1e6) / 1000), runs: busy.map((r) => Math.round(r.mips)) });
  emit({ name: 'platform-quiet.mips', unit: 'MIPS', value: round(without.mips), runs: quiet.map((r) => Math.round(r.mips)) });
  emit({ name: 'platform-interrupts.ratio', unit: 'with ÷ without', value: round(withIrq.mips / without.mips) });
  // The same sieve in U-mode, under PMP (U-mode's own TLBs, every fetch page checked), and in M-mode.
  const user: Run[] = [];
  const machine: Run[] = [];
  for (let i = 0; i < reps; i++) {
    user.push(await measure('usermode', ['rounds=100000000'], irqInsns, 0));
    machine.push(await measure('usermode', ['rounds=100000000', 'mode=m'], irqInsns, 0));
  }
  const u = median(user);
  const m = median(machine);
  emit({ name: 'usermode-u.mips', unit: 'MIPS', value: round(u.mips), runs: user.map((r) => Math.round(r.mips)) });
  emit({ name: 'usermode-m.mips', unit: 'MIPS', value: round(m.mips), runs: machine.map((r) => Math.round(r.mips)) });
  emit({ name: 'usermode.ratio', unit: 'U-mode ÷ M-mode', value: round(u.mips / m.mips) });
  const pl = await pauseLatency(quick ? 50 : 300);
  emit({ name: 'pause-latency.p50', unit: 'ms', value: round(pl.p50) });
  emit({ name: 'pause-latency.p99', unit: 'ms', value: round(pl.p99), max: round(pl.max) });
  emit({ name: 'idle-counter.cpu', unit: '% of one core', value: round(await idleCpuPercent()) });
  emit({ name: 'idle-uartirq.cpu', unit: '% of one core', value: round(await idleCpuPercent('uartirq', [])) });
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

await main();
