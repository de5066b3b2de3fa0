import { Worker } from 'node:worker_threads';
import { threadCode } from '../thread-code.ts';

/** The vCPU thread's code (thread-code.ts: bundled once per process when run from the .ts sources). */
function vcpuEntry(): URL {
  return threadCode(new URL('./vcpu-worker.ts', import.meta.url));
}

/**
 * vCPU threads. Starting one costs ~20 ms, more than a switch-over should take, so a host
 * keeps one spare thread started and idle: an incoming migration or a new VM takes it and a
 * new spare is started in the background. A thread receives its VcpuInit as its first message.
 */
let spare: Worker | undefined;
let keepSpare = false;
/** Switch-overs in progress: starting a thread (compiling the vCPU code) would compete with them. */
let holds = 0;

/**
 * A thread inherits its parent's node options by default. Under a module loader (tsx's
 * `--import`, the repo's own runs) that would register the loader's hooks in every vCPU thread
 * after all, for code that needs none: such a parent's options are not passed on (options a
 * thread may not take, like --expose-gc, cannot be passed explicitly, so none are).
 */
const LOADER_FLAG = /^(--import|--require|-r|--loader|--experimental-loader)(=|$)/;
/** Options about the parent's own script (`node --input-type=module -e ...`): a thread refuses to start with them. */
const SCRIPT_FLAG = /^(--input-type|--eval|-e|--print|-p)(=|$)/;
const threadOptions = process.execArgv.some((a) => LOADER_FLAG.test(a) || SCRIPT_FLAG.test(a)) ? { execArgv: [] } : {};

function spawn(): Worker {
  return new Worker(vcpuEntry(), threadOptions);
}

function refill(): void {
  if (!keepSpare || spare || holds > 0) return;
  spare = spawn();
  spare.unref(); // an idle spare never keeps the process alive
  spare.once('exit', () => { spare = undefined; });
  spare.on('error', () => { spare = undefined; });
}

/** Keep a spare vCPU thread ready from now on (hosts do; one-shot `ferry run` does not). */
export function keepSpareVcpuThread(on: boolean): void {
  keepSpare = on;
  if (on) refill();
  else if (spare) {
    const s = spare;
    spare = undefined;
    void s.terminate();
  }
}

/**
 * Holds back starting the next spare thread until the returned function is called (an incoming
 * migration holds it from setup to its end, so its switch-over does not share the CPU with a
 * thread start).
 */
export function deferSpareRefill(): () => void {
  holds++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holds === 0) setTimeout(refill, 20).unref();
  };
}

/** A vCPU thread for a new VM: the spare if there is one, else a fresh one. */
export function takeVcpuThread(): Worker {
  const w = spare ?? spawn();
  if (w === spare) {
    spare = undefined;
    w.removeAllListeners('exit');
    w.removeAllListeners('error');
  }
  w.ref();
  // Start the next spare off this call's critical path (creating a thread costs milliseconds).
  setTimeout(refill, 20).unref();
  return w;
}
