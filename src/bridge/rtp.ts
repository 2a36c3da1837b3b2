/**
 * RTP packets (RFC 3550 section 5.1) and the few Opus facts RTP needs
 * (RFC 7587: 48 kHz timestamp clock whatever the coded bandwidth; the
 * duration of a packet comes from its TOC byte, RFC 6716 section 3.1).
 *
 *    0                   1                   2                   3
 *   |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 *   |                           timestamp                           |
 *   |           synchronization source (SSRC) identifier            |
 *   |            contributing source (CSRC) identifiers (CC)        |
 *   [extension: 16-bit profile, 16-bit length in words, data]       ]
 *   payload ... [padding, last byte = padding length when P]
 */
import { AudioloopError } from '../errors';
import { randomBytes } from 'node:crypto';

export const RTP_VERSION = 2;
export const RTP_HEADER_BYTES = 12;
/** Opus over RTP always uses a 48 kHz timestamp clock (RFC 7587 section 4.1). */
export const OPUS_RTP_CLOCK = 48000;
/** The dynamic payload-type range (RFC 3551). */
export const DYNAMIC_PT_MIN = 96;
export const DYNAMIC_PT_MAX = 127;

export interface RtpPacket {
  payloadType: number;
  marker: boolean;
  /** 16-bit sequence number */
  seq: number;
  /** 32-bit timestamp */
  timestamp: number;
  /** 32-bit synchronization source */
  ssrc: number;
  csrcs: number[];
  payload: Buffer;
}

export class RtpError extends AudioloopError {
  constructor(message: string) {
    super('EPROTO', message);
  }
}

/** Builds an RTP packet (no padding, no extension). */
export function encodeRtp(p: Omit<RtpPacket, 'csrcs'> & { csrcs?: number[] }): Buffer {
  const csrcs = p.csrcs ?? [];
  if (csrcs.length > 15) throw new RangeError('at most 15 CSRCs');
  if (!Number.isInteger(p.payloadType) || p.payloadType < 0 || p.payloadType > 127) throw new RangeError(`payload type ${p.payloadType} is not 0-127`);
  const head = RTP_HEADER_BYTES + 4 * csrcs.length;
  const buf = Buffer.allocUnsafe(head + p.payload.length);
  buf[0] = (RTP_VERSION << 6) | csrcs.length;
  buf[1] = (p.marker ? 0x80 : 0) | p.payloadType;
  buf.writeUInt16BE(p.seq & 0xffff, 2);
  buf.writeUInt32BE(p.timestamp >>> 0, 4);
  buf.writeUInt32BE(p.ssrc >>> 0, 8);
  csrcs.forEach((c, i) => buf.writeUInt32BE(c >>> 0, RTP_HEADER_BYTES + 4 * i));
  p.payload.copy(buf, head);
  return buf;
}

/** Parses an RTP packet; throws RtpError for anything that is not RTP version 2 or is truncated. */
export function decodeRtp(buf: Buffer): RtpPacket {
  if (buf.length < RTP_HEADER_BYTES) throw new RtpError(`packet of ${buf.length} bytes is shorter than an RTP header`);
  const version = buf[0]! >> 6;
  if (version !== RTP_VERSION) throw new RtpError(`RTP version ${version}, expected 2`);
  const padding = (buf[0]! & 0x20) !== 0;
  const extension = (buf[0]! & 0x10) !== 0;
  const cc = buf[0]! & 0x0f;
  let off = RTP_HEADER_BYTES + 4 * cc;
  if (buf.length < off) throw new RtpError('packet truncated in the CSRC list');
  const csrcs: number[] = [];
  for (let i = 0; i < cc; i++) csrcs.push(buf.readUInt32BE(RTP_HEADER_BYTES + 4 * i));
  if (extension) {
    if (buf.length < off + 4) throw new RtpError('packet truncated in the header extension');
    off += 4 + 4 * buf.readUInt16BE(off + 2);
    if (buf.length < off) throw new RtpError('packet truncated in the header extension');
  }
  let end = buf.length;
  if (padding) {
    const pad = buf[buf.length - 1]!;
    if (pad === 0 || end - pad < off) throw new RtpError(`bad padding length ${pad}`);
    end -= pad;
  }
  return {
    payloadType: buf[1]! & 0x7f,
    marker: (buf[1]! & 0x80) !== 0,
    seq: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    csrcs,
    payload: buf.subarray(off, end),
  };
}

/** a - b for 16-bit sequence numbers, in -32768..32767 (RFC 1982 serial arithmetic). */
export function seqDiff(a: number, b: number): number {
  return ((((a - b) & 0xffff) + 0x8000) & 0xffff) - 0x8000;
}

/** a - b for 32-bit timestamps, in -2^31..2^31-1. */
export function tsDiff(a: number, b: number): number {
  return ((a - b) | 0);
}

/**
 * Extends wrapping 16-bit sequence numbers (or 32-bit timestamps) to an
 * unbounded count, relative to the highest value seen so far; values within
 * half the range behind it count as older, not as a wrap forward.
 */
export class Unwrapper {
  private last: number | null = null;
  constructor(private readonly bits: 16 | 32) {}

  unwrap(v: number): number {
    if (this.last === null) {
      this.last = v;
      return v;
    }
    const d = this.bits === 16 ? seqDiff(v, this.last) : tsDiff(v, this.last);
    const ext = this.last + d;
    if (d > 0) this.last = ext;
    return ext;
  }

  reset(): void {
    this.last = null;
  }
}

/** Samples (per channel, at 48 kHz) in one Opus frame for each of the 32 TOC configurations. */
function opusFrameSamples(config: number): number {
  if (config < 12) return [480, 960, 1920, 2880][config & 3]!; // SILK 10/20/40/60 ms
  if (config < 16) return [480, 960][config & 1]!; // hybrid 10/20 ms
  return [120, 240, 480, 960][config & 3]!; // CELT 2.5/5/10/20 ms
}

/**
 * The duration of an Opus packet in 48 kHz samples per channel, from its TOC
 * byte and frame count (RFC 6716 section 3.1); 0 for an empty or malformed packet.
 */
export function opusPacketSamples(packet: Buffer): number {
  if (packet.length < 1) return 0;
  const toc = packet[0]!;
  const per = opusFrameSamples(toc >> 3);
  switch (toc & 3) {
    case 0:
      return per;
    case 1:
    case 2:
      return 2 * per;
    default: {
      if (packet.length < 2) return 0;
      const n = packet[1]! & 0x3f;
      return n * per > 5760 ? 0 : n * per;
    }
  }
}

/**
 * A one-byte Opus packet with the configuration and stereo flag of `toc` and
 * code 0: decoding it makes libopus conceal one frame of that duration (its
 * packet-loss concealment; RFC 6716 treats a frame of 0 or 1 bytes as lost/DTX).
 */
export function opusPlcPacket(toc: number): Buffer {
  return Buffer.from([toc & 0xfc]);
}

/** A random 32-bit value (SSRC, initial sequence number and timestamp per RFC 3550). */
export function randomU32(): number {
  return randomBytes(4).readUInt32BE(0);
}
