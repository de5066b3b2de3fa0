/**
 * The part of a `ws` WebSocket the migration engine uses, so the engine can run over a real
 * socket or over a test's in-memory one. The `ws` WebSocket satisfies it as it is.
 */
export interface LinkSocket {
  readonly readyState: number;
  readonly CONNECTING: number;
  readonly OPEN: number;
  /** Bytes handed to `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Reading is paused (`pause`), so frames back up in the network instead of memory. */
  readonly isPaused: boolean;
  send(data: Uint8Array, cb?: (err?: Error) => void): void;
  ping(): void;
  /** Closes cleanly: what was sent before still reaches the peer, then the close frame. */
  close(code?: number, reason?: string): void;
  /** Cuts the connection at once. */
  terminate(): void;
  pause(): void;
  resume(): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'ping' | 'pong', listener: (data: Buffer) => void): this;
  once(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  removeAllListeners(event?: 'message' | 'close' | 'error' | 'ping' | 'pong'): this;
}
