/**
 * Text that came from a peer, made safe to log, to echo in an error, or to put in a WebSocket
 * close reason (which `ws` refuses, by throwing, beyond 123 bytes of UTF-8).
 */
import type { LinkSocket } from './socket.ts';

/** The most a close frame's reason may hold (RFC 6455: 125 bytes of payload, 2 for the code). */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * At most `maxBytes` of UTF-8, cut at a character boundary, with control characters shown as
 * `?` and an ellipsis when cut. Non-strings are described by their type, never stringified whole.
 */
export function peerText(v: unknown, maxBytes = 64): string {
  const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined ? String(v) : `<${kindOf(v)}>`;
  // Four bytes per character at most: a longer string cannot fit, and is never walked whole.
  const head = s.length > maxBytes ? s.slice(0, maxBytes + 1) : s;
  const chars = Array.from(head, (ch) => {
    const code = ch.codePointAt(0)!;
    return code < 0x20 || (code >= 0x7f && code < 0xa0) || (code >= 0xd800 && code <= 0xdfff) ? '?' : ch;
  });
  const clean = chars.join('');
  if (head === s && Buffer.byteLength(clean) <= maxBytes) return clean;
  let out = '';
  let bytes = 0;
  for (const ch of chars) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes - 3) break;
    out += ch;
    bytes += n;
  }
  return `${out}...`;
}

function kindOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return typeof v;
}

/** A close reason from any text (ours may quote a peer's): sanitized and at most 123 bytes. */
export function closeReason(text: string): string {
  return peerText(text, MAX_CLOSE_REASON_BYTES);
}

/** Closes `ws` with a code and a reason that cannot make `ws` throw; an already closing socket is left alone. */
export function closeWith(ws: LinkSocket, code: number, reason: string): void {
  if (ws.readyState !== ws.OPEN && ws.readyState !== ws.CONNECTING) return;
  try {
    ws.close(code, closeReason(reason));
  } catch {
    ws.terminate();
  }
}

/** How a link closed, for a message: " (CODE: reason)", the reason as a peer sent it, bounded. */
export function closeDetail(code: number, reason: Buffer): string {
  return ` (${code}${reason.length ? `: ${peerText(reason.toString(), 123)}` : ''})`;
}
