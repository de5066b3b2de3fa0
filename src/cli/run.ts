import { checkRamSize } from '../memory/guest-memory.ts';
import { formatBootArgs } from '../vm/boot.ts';
import { loadProgram } from '../vm/programs.ts';
import { Vm } from '../vm/vm.ts';
import { UsageError } from '../errors.ts';
import { parseCount, parseSize } from './parse.ts';

export interface RunOptions {
  memory: string;
  icount?: boolean;
  insnLimit?: string;
  digest?: boolean;
  arg: string[];
}

/** Runs a check whose failure is the user's input, not a failed operation (exit status 2). */
function asUsage(check: () => unknown): void {
  try {
    check();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * `ferry run`: boots a guest in a local VM (no host), wires the UART to stdio, and exits with
 * the guest's exit code; with --digest the last stdout line is `digest: <hex>`.
 */
export async function runCommand(program: string, o: RunOptions): Promise<number> {
  const memory = parseSize(o.memory, 'memory size');
  asUsage(() => checkRamSize(memory));
  asUsage(() => formatBootArgs(o.arg));
  const insnLimit = o.insnLimit === undefined ? 0 : parseCount(o.insnLimit, 'instruction limit');
  if (o.insnLimit !== undefined && insnLimit === 0) throw new UsageError('--insn-limit must be at least 1');
  const { elf } = loadProgram(program);
  const vm = Vm.create({ elf, memory, icount: o.icount ?? false, insnLimit, args: o.arg });

  let lastByte = 10;
  vm.on('console', (data: Uint8Array) => {
    if (data.length) lastByte = data[data.length - 1]!;
    process.stdout.write(data);
  });
  const onInput = (chunk: Buffer) => vm.sendInput(chunk);
  process.stdin.on('data', onInput);
  process.stdin.on('error', () => {}); // no stdin (CI): the guest simply sees no input
  const onSignal = () => {
    void vm.destroy().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    vm.start();
    const { exitCode, reason } = await vm.waitHalted();
    // A guest stuck in a trap loop is halted by the CPU (cpu.ts checkTrapLoop): say where.
    if (reason.startsWith('trap loop')) process.stderr.write(`${lastByte === 10 ? '' : '\n'}ferry: the guest is stuck in a ${reason}\n`);
    if (o.digest) {
      const d = await vm.digest();
      process.stdout.write(`${lastByte === 10 ? '' : '\n'}digest: ${d}\n`);
    }
    return exitCode & 0xff;
  } finally {
    process.stdin.off('data', onInput);
    process.stdin.pause();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await vm.destroy();
  }
}
