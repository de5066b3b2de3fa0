// Tags on every message after the hello (src/wire/frame-mac.ts), as the two ends of one connection
// use them: what one side tags the other accepts, in order, once; anything altered, replayed,
// reordered, dropped, or tagged for another connection, endpoint or direction fails.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { CLOSE_FRAME_AUTH, frameKeys, frameKeysFor, MacSocket, TAG_BYTES, TagStream } from '../../src/wire/frame-mac.ts';
import type { LinkSocket } from '../../src/wire/socket.ts';

const TOKEN = 'frame-mac-test-token-0123456789';
const challenge = new Uint8Array(32).fill(1);
const nonce = new Uint8Array(32).fill(2);

function pair(endpoint = '/migrate', c = challenge, n = nonce) {
  const client = frameKeys(TOKEN, 'client', endpoint, c, n);
  const host = frameKeys(TOKEN, 'host', endpoint, c, n);
  return { client, host };
}

function tagged(tags: TagStream, m: Uint8Array): Buffer {
  return Buffer.concat([m, tags.tag(m)]);
}

describe('message tags', () => {
  it('what one side tags the other opens, in order, and each direction has its own key', () => {
    const { client, host } = pair();
    expect(client.send.equals(host.receive)).toBe(true);
    expect(host.send.equals(client.receive)).toBe(true);
    expect(client.send.equals(client.receive)).toBe(false);
    const out = new TagStream(client.send);
    const into = new TagStream(host.receive);
    for (let i = 0; i < 100; i++) {
      const m = Buffer.from(`message ${i}`.repeat(i + 1));
      const f = tagged(out, m);
      expect(f.length).toBe(m.length + TAG_BYTES);
      expect(into.open(f)?.equals(m)).toBe(true);
    }
  });

  it('an altered byte, a replayed, reordered or dropped message, or a reflected one fails', () => {
    const { client, host } = pair();
    const m = [Buffer.from('first'), Buffer.from('second'), Buffer.from('third')];
    const send = () => { const out = new TagStream(client.send); return m.map((x) => tagged(out, x)); };

    const altered = send()[0]!;
    altered[2]! ^= 0x01;
    expect(new TagStream(host.receive).open(altered)).toBeUndefined();
    const badTag = send()[0]!;
    badTag[badTag.length - 1]! ^= 0x80;
    expect(new TagStream(host.receive).open(badTag)).toBeUndefined();

    const f = send();
    const replay = new TagStream(host.receive);
    expect(replay.open(f[0]!)).toBeDefined();
    expect(replay.open(f[0]!)).toBeUndefined();

    const reorder = new TagStream(host.receive);
    expect(reorder.open(f[1]!)).toBeUndefined();

    const drop = new TagStream(host.receive);
    expect(drop.open(f[0]!)).toBeDefined();
    expect(drop.open(f[2]!)).toBeUndefined();

    // The host's own message sent back to it (a reflection) is under the other direction's key.
    const reflected = tagged(new TagStream(host.send), m[0]!);
    expect(new TagStream(host.receive).open(reflected)).toBeUndefined();
    expect(new TagStream(host.receive).open(Buffer.alloc(TAG_BYTES - 1))).toBeUndefined();
  });

  it('keys differ for another connection (other challenge or nonce), another endpoint, or another token', () => {
    const base = pair('/migrate').client.send;
    expect(pair('/control').client.send.equals(base)).toBe(false);
    expect(pair('/migrate', new Uint8Array(32).fill(9)).client.send.equals(base)).toBe(false);
    expect(pair('/migrate', challenge, new Uint8Array(32).fill(9)).client.send.equals(base)).toBe(false);
    expect(frameKeys(`${TOKEN}x`, 'client', '/migrate', challenge, nonce).send.equals(base)).toBe(false);
    const m = Buffer.from('vm.destroy');
    const onControl = tagged(new TagStream(pair('/control').client.send), m);
    expect(new TagStream(pair('/migrate').host.receive).open(onControl)).toBeUndefined();
  });

  it('are used only with a token and without TLS', () => {
    expect(frameKeysFor(TOKEN, 'client', '/control', challenge, nonce, new Uint8Array(0))).toBeDefined();
    expect(frameKeysFor(undefined, 'client', '/control', challenge, nonce, new Uint8Array(0))).toBeUndefined();
    expect(frameKeysFor(TOKEN, 'client', '/control', challenge, nonce, new Uint8Array(32).fill(3))).toBeUndefined();
  });
});

/** One end of an in-memory connection: what it sends is delivered to `peer` as a message. */
class Wire extends EventEmitter {
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  isPaused = false;
  peer: Wire | undefined;
  closedWith: number | undefined;
  send(data: Uint8Array): void { this.peer!.emit('message', Buffer.from(data), true); }
  ping(): void {}
  close(code?: number): void { this.closedWith = code; this.readyState = 3; }
  terminate(): void { this.readyState = 3; }
  pause(): void {}
  resume(): void {}
}

describe('MacSocket', () => {
  it('passes tagged messages through without their tags, and closes the link at the first message that fails', () => {
    const { client, host } = pair();
    const a = new Wire();
    const b = new Wire();
    a.peer = b;
    b.peer = a;
    const sender = new MacSocket(a as unknown as LinkSocket, client);
    const receiver = new MacSocket(b as unknown as LinkSocket, host);
    const heard: string[] = [];
    let failed = 0;
    receiver.on('message', (d: Buffer) => heard.push(d.toString()));
    receiver.on('frame-auth-failed', () => failed++);
    sender.send(Buffer.from('one'));
    sender.send(Buffer.from('two'));
    expect(heard).toEqual(['one', 'two']);
    // Someone on the path injects a message of their own, untagged or with a made-up tag.
    b.emit('message', Buffer.from('injected, no tag'), true);
    expect(failed).toBe(1);
    expect(b.closedWith).toBe(CLOSE_FRAME_AUTH);
    // Nothing after it is heard, even a genuine message.
    b.readyState = 1;
    sender.send(Buffer.from('three'));
    expect(heard).toEqual(['one', 'two']);
  });
});

describe('MacSocket errors', () => {
  it('an error on the socket with nobody listening on the MacSocket does not throw (a host crash the fuzzer found)', () => {
    const w = new Wire();
    w.on('error', () => {}); // the host's own listener on the raw socket
    const m = new MacSocket(w as unknown as LinkSocket, pair().host);
    expect(() => w.emit('error', new Error('Invalid WebSocket frame: invalid UTF-8 sequence'))).not.toThrow();
    const seen: string[] = [];
    m.on('error', (e: Error) => seen.push(e.message));
    w.emit('error', new Error('later'));
    expect(seen).toEqual(['later']);
  });
});
