/**
 * The one thing `ws` does not let us change through its API: a connection's maximum message
 * size after it is open. Ferry accepts a few kilobytes from a peer until its hello is accepted,
 * then the endpoint's limit (a page frame, an uploaded ELF); `ws` checks each frame's announced
 * length against its receiver's `_maxPayload` before it buffers a byte, so raising that field is
 * what "raised after authentication" means. Checked at run time: should `ws` rename it, this
 * throws (and the host test that uploads a large ELF after the hello fails) rather than silently
 * keeping the small limit.
 */
import type WebSocket from 'ws';

interface ReceiverLimit {
  _maxPayload: number;
}

export function setMaxPayload(ws: WebSocket, bytes: number): void {
  // ws keeps its Receiver on a private field; typed here as the one property we use.
  const receiver = (ws as unknown as { _receiver?: Partial<ReceiverLimit> })._receiver;
  if (receiver === undefined || typeof receiver._maxPayload !== 'number') {
    throw new Error('ws internals changed: cannot set a connection\'s maximum payload (ws/lib/receiver.js _maxPayload)');
  }
  receiver._maxPayload = bytes;
}
