/**
 * Compressed page frames: a whole page frame (page-frame.ts, deltas and all) as one LZ4 block,
 * for links slower than the CPU that compresses (migration/encoding-policy.ts decides).
 *
 *   u8 FRAME_LZ4 | u8 0 | u16 0 | u32 frame length | LZ4 block
 *
 * (lz4-napi's block format is the frame length, then the block: the header's last word is that
 * length.) A frame from a peer is inflated only after its stated length is checked against the
 * largest page frame, and the result must be exactly that long; it is then checked as any page
 * frame is.
 */
import { compressSync, uncompressSync } from 'lz4-napi';
import { FerryError } from '../errors.ts';
import { MAX_FRAME_BYTES } from './page-frame.ts';

export const FRAME_LZ4 = 0x51;
const HEADER = 4;

export function isCompressedFrame(frame: Uint8Array): boolean {
  return frame.length >= 1 && frame[0] === FRAME_LZ4;
}

/** `frame` compressed, or undefined if that would not make it smaller. */
export function compressPageFrame(frame: Uint8Array): Uint8Array | undefined {
  const block = compressSync(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
  if (block.length + HEADER >= frame.length) return undefined;
  const out = new Uint8Array(HEADER + block.length); // a buffer of its own (transferable), never the pool's
  out[0] = FRAME_LZ4;
  out.set(block, HEADER);
  return out;
}

/** The page frame inside a compressed frame from a peer; throws FerryError EPROTO for anything malformed. */
export function inflatePageFrame(data: Uint8Array): Buffer {
  if (data.length < HEADER + 5 || data[0] !== FRAME_LZ4 || data[1] !== 0 || data[2] !== 0 || data[3] !== 0) {
    throw new FerryError('EPROTO', 'malformed compressed frame header');
  }
  const block = Buffer.from(data.buffer, data.byteOffset + HEADER, data.byteLength - HEADER);
  const length = block.readUInt32LE(0);
  if (length > MAX_FRAME_BYTES) throw new FerryError('EPROTO', `a compressed frame of ${length} bytes exceeds the largest page frame (${MAX_FRAME_BYTES})`);
  let frame: Buffer;
  try {
    frame = uncompressSync(block);
  } catch (e) {
    throw new FerryError('EPROTO', `corrupt compressed frame: ${(e as Error).message}`);
  }
  if (frame.length !== length) throw new FerryError('EPROTO', `a compressed frame inflated to ${frame.length} bytes, not the ${length} it states`);
  return frame;
}
