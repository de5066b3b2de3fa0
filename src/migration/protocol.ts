/**
 * The migration stream between two hosts (`/migrate`), sectioned like QEMU's:
 *
 *   source (client)                                   destination (host)
 *   bulk:  hello {v, role:'bulk', id, mac} ------->   (same hello/ready + HMAC as /control)
 *          setup {vm, config, ram, isa, devices} ->   compatibility check; reserves the name,
 *                                           <-----    setup-ok | refused {code, message}   (nothing changed yet)
 *   prio:  hello {v, role:'prio', id, mac} ------->   the priority channel joins migration `id`
 *   bulk:  PAGES frames (binary, see below) ------>   copied straight into guest RAM
 *          round-end {round} ------------------>
 *                                           <-----    round-ack {round, pages}      (paces rounds, measures bandwidth)
 *          ... more rounds ...
 *          state {vm state, run} -------------->   device + CPU section, after the last pages
 *                                           <-----    completed {resumedAt}          VM runs on the destination
 *   prio:  cancel {reason} -------------------->   destination discards its half
 *
 * A source that lost its link after sending the state section (pre-copy, cold) does not know
 * whether the destination resumed the guest; it keeps its copy paused and asks, over new links:
 *
 *   query: hello {role:'query', id}, query ---->
 *                                           <-----    outcome {completed | discarded | pending}
 *
 * Post-copy (DESIGN §5), hybrid after its pre-copy rounds:
 *
 *   bulk:  postcopy-advise {missing bitmap} --->   page states prepared, queued frames written
 *                                           <-----    advise-ok                      (the source pauses only now)
 *          state {..., postcopy {late pages}} ->   late pages join the missing set; the vCPU resumes
 *                                           <-----    resumed                        (downtime ends)
 *   prio:                                   <-----    page-req {page}                for each fault
 *          page frame ------------------------->   written, PRESENT stored, the vCPU woken
 *   bulk:  pushed page frames ----------------->   written between polls (faults first)
 *   prio:                                   <-----    pushed {bytes, received}       paces the push window
 *   bulk:  postcopy-done ---------------------->
 *                                           <-----    completed                      every page is there
 * If the link drops in post-copy both sides keep their state (postcopy-paused) and the source
 * reconnects with the same id:
 *
 *   bulk:  hello {role:'bulk', id, recover:true} ->
 *          recover ---------------------------->   the paused migration takes the new link
 *                                           <-----    recv-bitmap {received} | completed | failed
 *   prio:  hello {role:'prio', id} ------------->   outstanding faults are asked again
 *          ... the push goes on with the pages the bitmap does not have ...
 *
 * Control messages are msgpack maps with a string `t`, one per WebSocket frame, each checked
 * against its schema below when it is decoded (types, ranges, sizes, and, once the setup has
 * named the VM, page numbers and bitmaps against its RAM); what may arrive in which phase is
 * each side's business (see IncomingMigration's BULK_ACCEPTS, and the Inbox's awaited types).
 * Page frames are raw binary (src/memory/page-frame.ts) so page bytes never pass the encoder. In
 * pre-copy they may carry XBZRLE deltas and come LZ4-compressed (page-compression.ts), built on
 * the page pool (encode-pool.ts) when forced or when the link is the bottleneck (encoding-policy.ts).
 */
import { z } from 'zod';
import { FerryError } from '../errors.ts';
import { MAX_RAM_SIZE, PAGE_SIZE } from '../memory/layout.ts';
import { MAX_FRAME_BYTES } from '../memory/page-frame.ts';
import { CPU_STATE_WORDS } from '../cpu/state.ts';
import { resetRtcState } from '../devices/goldfish-rtc.ts';
import { resetPlicState } from '../devices/plic.ts';
import { machineConfigSchema, safeCount, VM_STATE_VERSION, vmNameSchema, vmStateSchema } from '../vm/state-schema.ts';
import { packMsg, unpackChecked, type MsgpackLimits } from '../wire/codec.ts';
import { peerText } from '../wire/peer-text.ts';

/**
 * 2: token proofs name their endpoint, and messages after the hello carry tags over plain TCP (wire/frame-mac.ts).
 * 3: post-copy `pushed` acknowledges receipt as well as writing.
 * 4: pre-copy page frames may hold XBZRLE delta pages, and may come LZ4-compressed (memory/xbzrle.ts, page-compression.ts).
 */
export const MIGRATION_PROTOCOL_VERSION = 4;
export const ISA = 'rv32im_zicsr';
export const DEVICES = [
  'uart16550@0x10000000', 'clint@0x2000000', 'test-finisher@0x100000', 'plic@0xc000000', 'goldfish-rtc@0x101000', 'virtio-mmio-empty@0x10001000x8',
];
/** The largest message on an authenticated migration link: a page frame, or a state section. */
export const MIGRATION_MAX_PAYLOAD = MAX_FRAME_BYTES + 1024 * 1024;
/** Pages in the largest RAM a VM may have. */
export const MAX_PAGES = MAX_RAM_SIZE / PAGE_SIZE;
/** Console history carried with a VM (the registry keeps 16 KiB). */
const MAX_CONSOLE = 64 * 1024;

/**
 * Post-copy liveness: the source pings its priority channel this often, and either side takes
 * a link that has said nothing (no message, ping or pong) for LINK_SILENT_MS as lost, so a
 * partition that sends no FIN or RST still pauses both sides and leads to a recovery.
 */
export const LINK_PING_MS = 1_000;
export const LINK_SILENT_MS = 5_000;

const LIMITS: MsgpackLimits = { maxDepth: 6, maxString: 4096, maxBinary: MAX_PAGES * 4, maxItems: 70_000 };

const pageNumber = z.number().int().min(0).max(MAX_PAGES - 1);
const pageCount = z.number().int().min(0).max(MAX_PAGES);
/** Bytes (msgpack bin or a typed Uint8Array) of at most `max`. */
const bytes = (max: number) => z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected bytes').refine((b) => b.length <= max, `more than ${max} bytes`);
const bitmap = bytes(MAX_PAGES / 8);
const errorCode = z.string().max(32);
const errorText = z.string().max(1024);
const runState = z.enum(['running', 'paused', 'created', 'halted']);
export type RunState = z.infer<typeof runState>;

const setup = z.strictObject({
  t: z.literal('setup'),
  /** The VM's name at the source: the name the destination asks the source about. */
  vm: vmNameSchema,
  /** Its name on the destination, when the user renames it there (default: `vm`). */
  as: vmNameSchema.optional(),
  program: z.string().max(256),
  mode: z.enum(['precopy', 'cold', 'postcopy', 'hybrid']),
  config: machineConfigSchema,
  insnLimit: safeCount,
  pageSize: z.number().int(),
  isa: z.string().max(64),
  devices: z.array(z.string().max(64)).max(16),
  /** The source host's control URL: a destination left without its link asks it whether the guest still has a source. */
  source: z.string().max(2048).optional(),
  /** The source host process's incarnation: one found at that URL with another is a restarted host. */
  sourceIncarnation: z.string().max(64).optional(),
  /** Post-copy: the user gives the VM up after this long without a link (both sides declare it lost). */
  giveUpAfterMs: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
});

/**
 * Every message of the migration protocol, by type. Post-copy advice and switch-over carry page
 * sets: `missing` (one bit per page: pages the destination will have to receive; every other
 * page is zero or already there) and `late` (pages written since the advice, which join it).
 */
const MESSAGES = {
  setup,
  'setup-ok': z.strictObject({ t: z.literal('setup-ok') }),
  refused: z.strictObject({ t: z.literal('refused'), code: errorCode, message: errorText }),
  'round-end': z.strictObject({ t: z.literal('round-end'), round: safeCount }),
  /**
   * The VM's console history so far, sent ahead with each round so the state section at the
   * switch-over carries only what the guest printed since (16 KiB of history would otherwise
   * add a round trip to the downtime on a slow link: more than a fresh TCP window).
   */
  console: z.strictObject({ t: z.literal('console'), history: bytes(MAX_CONSOLE) }),
  /** Paces rounds and measures bandwidth. */
  'round-ack': z.strictObject({ t: z.literal('round-ack'), round: safeCount, pages: safeCount }),
  state: z.strictObject({
    t: z.literal('state'),
    state: vmStateSchema,
    run: runState,
    console: bytes(MAX_CONSOLE),
    /** `console` follows the history of the last `console` message (else it is the whole history). */
    consoleAppend: z.literal(true).optional(),
    postcopy: z.strictObject({
      late: z.custom<Uint32Array>((v) => v instanceof Uint32Array, 'expected a Uint32Array').refine((l) => l.length <= MAX_PAGES, 'too many late pages'),
      missingCount: pageCount,
    }).optional(),
  }),
  /** Post-copy: the destination runs the VM now (the source's downtime clock stops). */
  resumed: z.strictObject({ t: z.literal('resumed') }),
  /** Post-copy, on the priority channel: the vCPU faulted on this page. */
  'page-req': z.strictObject({ t: z.literal('page-req'), page: pageNumber }),
  /** Post-copy, before the switch-over: the pages the destination will have to fetch, so it can prepare. */
  'postcopy-advise': z.strictObject({ t: z.literal('postcopy-advise'), advice: z.strictObject({ missing: bitmap, missingCount: pageCount }) }),
  /** The destination has prepared its page states: the source may pause (so that work is not downtime). */
  'advise-ok': z.strictObject({ t: z.literal('advise-ok') }),
  /**
   * Post-copy, destination -> source on prio: bytes of pushed (bulk) frames received, and written
   * into guest RAM, so far on this link; sent as each frame arrives and as the vCPU thread writes
   * them. They pace the push (migration/push-window.ts), so pushed data never queues up on the
   * path ahead of a fault's page.
   */
  pushed: z.strictObject({ t: z.literal('pushed'), bytes: safeCount, received: safeCount }),
  /** Post-copy: every page has been sent once. */
  'postcopy-done': z.strictObject({ t: z.literal('postcopy-done'), pages: pageCount }),
  /** Post-copy recovery, source -> destination, first on a bulk link opened with `recover` in its hello. */
  recover: z.strictObject({ t: z.literal('recover') }),
  /** Post-copy recovery, destination -> source: one bit per page, set for the pages present here. */
  'recv-bitmap': z.strictObject({ t: z.literal('recv-bitmap'), received: bitmap, receivedCount: pageCount }),
  completed: z.strictObject({ t: z.literal('completed'), resumedAt: z.number() }),
  cancel: z.strictObject({ t: z.literal('cancel'), reason: errorText }),
  /**
   * Destination -> source on a `query` link: how the migration ended here. `completed`: the guest
   * resumed here; `discarded`: it never did and never will; `pending`: its state section is being
   * loaded, ask again.
   */
  /** Source -> destination, first on a `query` link (so the answer cannot overtake the hello's end). */
  query: z.strictObject({ t: z.literal('query') }),
  outcome: z.strictObject({ t: z.literal('outcome'), outcome: z.enum(['completed', 'discarded', 'pending']), message: errorText }),
  failed: z.strictObject({ t: z.literal('failed'), code: errorCode, message: errorText }),
} as const;

type Messages = typeof MESSAGES;
export type MigrationMsg = { [K in keyof Messages]: z.infer<Messages[K]> }[keyof Messages];
export type MigrationMsgType = MigrationMsg['t'];
export type SetupMsg = z.infer<typeof setup>;
export type PostcopyAdvice = z.infer<Messages['postcopy-advise']>['advice'];

/** What a link knows once a setup has named the VM: its RAM, in pages. */
export interface StreamContext {
  pages: number;
}

export function encodeMsg(m: MigrationMsg): Buffer {
  return packMsg(m);
}

/**
 * Decodes and checks one message from a peer: the bounded msgpack walk, the schema of its type,
 * and with `ctx` its page numbers and bitmaps against the VM's RAM. Throws FerryError EPROTO
 * (or EINCOMPATIBLE for a state of another RAM size) saying what is wrong.
 */
export function decodeMsg(frame: Uint8Array, ctx?: StreamContext): MigrationMsg {
  const v = unpackChecked(frame, LIMITS);
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as { t?: unknown }).t !== 'string') {
    throw new FerryError('EPROTO', 'malformed migration message: expected a map with a string "t"');
  }
  const t = (v as { t: string }).t;
  const schema = Object.hasOwn(MESSAGES, t) ? MESSAGES[t as keyof Messages] : undefined;
  if (schema === undefined) throw new FerryError('EPROTO', `unknown migration message "${peerText(t, 32)}"`);
  const r = schema.safeParse(v);
  if (!r.success) throw new FerryError('EPROTO', `malformed "${t}" message: ${issueText(r.error)}`);
  const m = r.data as MigrationMsg;
  if (ctx !== undefined) {
    const why = contextProblem(m, ctx.pages);
    if (why !== undefined) throw new FerryError('EPROTO', `"${t}" message ${why}`);
  }
  return m;
}

/** The first schema issue, as "path: message" (bounded: peer text never goes out unchecked). */
export function issueText(e: z.ZodError): string {
  const i = e.issues[0];
  if (!i) return 'invalid';
  const path = i.path.map(String).join('.');
  return peerText(path ? `${path}: ${i.message}` : i.message, 200);
}

function setBits(bits: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bits.length; i++) {
    let b = bits[i]!;
    for (; b; n++) b &= b - 1;
  }
  return n;
}

/** Checks that need the VM's RAM size (`pages`), or undefined when the message fits it. */
function contextProblem(m: MigrationMsg, pages: number): string | undefined {
  const bitmapBytes = Math.ceil(pages / 8);
  switch (m.t) {
    case 'page-req':
      return m.page < pages ? undefined : `asks for page ${m.page}, outside guest RAM (${pages} pages)`;
    case 'postcopy-advise': {
      const { missing, missingCount } = m.advice;
      if (missing.length !== bitmapBytes) return `has a ${missing.length}-byte bitmap for ${pages} pages`;
      if (setBits(missing) !== missingCount) return 'counts other pages than its bitmap holds';
      return pages % 8 !== 0 && missing[bitmapBytes - 1]! >>> (pages % 8) ? 'has bits beyond guest RAM' : undefined;
    }
    case 'recv-bitmap':
      if (m.received.length !== bitmapBytes) return `has a ${m.received.length}-byte bitmap for ${pages} pages`;
      return setBits(m.received) === m.receivedCount ? undefined : 'counts other pages than its bitmap holds';
    case 'state': {
      if (m.state.config.ramSize !== pages * PAGE_SIZE) return `is for ${m.state.config.ramSize} bytes of RAM, not ${pages * PAGE_SIZE}`;
      const pc = m.postcopy;
      if (pc === undefined) return undefined;
      if (pc.missingCount > pages) return 'counts more missing pages than guest RAM has';
      for (let i = 0; i < pc.late.length; i++) if (pc.late[i]! >= pages) return `names late page ${pc.late[i]}, outside guest RAM`;
      return undefined;
    }
    case 'postcopy-done':
      return m.pages <= pages ? undefined : 'counts more pages than guest RAM has';
    default:
      return undefined;
  }
}

/**
 * Runs the codec over messages shaped like a switch-over's, so a host's first migration does
 * not compile msgpack and schema paths inside its downtime (measured: about 2 ms on a fresh host).
 */
export function warmCodec(): void {
  const cpu = Array.from({ length: CPU_STATE_WORDS }, (_, i) => (i % 3 === 0 ? -(i << 20) : i * 977));
  cpu[33] = 0x8000_0000 | 0;
  cpu[34] = 3;
  cpu[35] = 0;
  cpu[36] = 0;
  cpu[37] = 0x8000_0000 | 0;
  cpu[39] = 0x8000_0100 | 0;
  const devices = (mode: 'icount' | 'realtime', mtime: number, rx: number[]) => ({
    uart: { ier: 0, lcr: 3, mcr: 0, scr: 0, fcr: 0, dll: 0, dlm: 0, rx, thrIpending: 0 }, clint: { msip: 0, mtimecmpLo: 0xffff_ffff, mtimecmpHi: 1 }, clock: { mode, mtime },
    plic: resetPlicState(), rtc: resetRtcState(),
  });
  // Both clocks, small and large numbers, with and without post-copy fields: the shapes a switch-over meets.
  const samples: [MigrationMsg, number][] = [
    [{
      t: 'state', run: 'running', console: new Uint8Array(64),
      state: { version: VM_STATE_VERSION, config: { ramSize: 1 << 20, clock: 'icount', tohost: 0 }, insnLimit: 10, cpu, devices: devices('icount', 2, [1, 2]) },
      postcopy: { late: new Uint32Array(8), missingCount: 8 },
    }, 256],
    [{
      t: 'state', run: 'running', console: new Uint8Array(0),
      state: { version: VM_STATE_VERSION, config: { ramSize: 256 << 20, clock: 'realtime', tohost: -1 }, insnLimit: 0, cpu, devices: devices('realtime', 52_900_988.5, []) },
    }, 65_536],
    [{
      t: 'state', run: 'paused', console: new Uint8Array(16),
      state: { version: VM_STATE_VERSION, config: { ramSize: 8 << 20, clock: 'realtime', tohost: -1 }, insnLimit: 0, cpu, devices: devices('realtime', 2 ** 40, []) },
    }, 2048],
    [{ t: 'resumed' }, 256], [{ t: 'page-req', page: 123 }, 256], [{ t: 'pushed', bytes: 1 << 30, received: 1 << 30 }, 256], [{ t: 'advise-ok' }, 256],
    [{ t: 'completed', resumedAt: Date.now() }, 256], [{ t: 'round-ack', round: 3, pages: 1000 }, 256], [{ t: 'setup-ok' }, 256],
  ];
  for (let i = 0; i < 300; i++) for (const [m, pages] of samples) decodeMsg(encodeMsg(m), { pages });
}
