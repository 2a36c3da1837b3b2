/**
 * Counter patterns: every frame carries its own index, so a test can tell
 * exactly which frames arrived, in which order, with no gap or duplicate.
 * Values are chosen to survive the sound server's float path bit-exactly.
 */
import { FORMAT_INFO, type SampleFormat } from '../../src/format';

const PERIOD: Record<SampleFormat, number> = { u8: 127, s16le: 30000, s24le: 8000000, s32le: 8000000, f32le: 30000 };

/** The integer sample value of frame i, channel c (never silence). */
export function counterValue(format: SampleFormat, i: number, c: number): number {
  const mag = (i % PERIOD[format]) + 1;
  const sign = c % 2 === 0 ? 1 : -1;
  switch (format) {
    case 'u8':
      return 0x80 + sign * mag;
    case 's32le':
      return sign * mag * 256;
    case 'f32le':
      return (sign * mag) / 32768;
    default:
      return sign * mag;
  }
}

export function readSample(buf: Buffer, off: number, format: SampleFormat): number {
  switch (format) {
    case 'u8':
      return buf.readUInt8(off);
    case 's16le':
      return buf.readInt16LE(off);
    case 's24le':
      return buf.readIntLE(off, 3);
    case 's32le':
      return buf.readInt32LE(off);
    case 'f32le':
      return buf.readFloatLE(off);
  }
}

export function writeSample(buf: Buffer, off: number, format: SampleFormat, v: number): void {
  switch (format) {
    case 'u8':
      buf.writeUInt8(v, off);
      break;
    case 's16le':
      buf.writeInt16LE(v, off);
      break;
    case 's24le':
      buf.writeIntLE(v, off, 3);
      break;
    case 's32le':
      buf.writeInt32LE(v, off);
      break;
    case 'f32le':
      buf.writeFloatLE(v, off);
      break;
  }
}

export function counterPcm(format: SampleFormat, channels: number, frames: number, start = 0): Buffer {
  const bytes = FORMAT_INFO[format].bytes;
  const buf = Buffer.alloc(frames * channels * bytes);
  for (let i = 0; i < frames; i++)
    for (let c = 0; c < channels; c++) writeSample(buf, (i * channels + c) * bytes, format, counterValue(format, start + i, c));
  return buf;
}

export interface CounterCheck {
  /** silent frames before the first counter frame */
  lead: number;
  /** counter index of the first non-silent frame (-1 if none) */
  first: number;
  /** frames that continue the counter without a gap, from `first` */
  frames: number;
  /** silent frames after the counter run */
  tail: number;
  /** frames that are neither the expected counter value nor trailing silence */
  bad: number;
  /** frame offset of the first bad frame (-1 if none) */
  firstBad: number;
  total: number;
}

function isSilent(buf: Buffer, off: number, format: SampleFormat, channels: number): boolean {
  const bytes = FORMAT_INFO[format].bytes;
  for (let c = 0; c < channels; c++) {
    const v = readSample(buf, off + c * bytes, format);
    if (v !== (format === 'u8' ? 0x80 : 0)) return false;
  }
  return true;
}

/** Finds the counter run in captured PCM; silence may surround it. */
export function checkCounter(buf: Buffer, format: SampleFormat, channels: number): CounterCheck {
  const bytes = FORMAT_INFO[format].bytes;
  const fb = bytes * channels;
  const total = Math.floor(buf.length / fb);
  let lead = 0;
  while (lead < total && isSilent(buf, lead * fb, format, channels)) lead++;
  const res: CounterCheck = { lead, first: -1, frames: 0, tail: 0, bad: 0, firstBad: -1, total };
  if (lead === total) return res;
  // recover the index of the first frame from its channel-0 value
  const v0 = readSample(buf, lead * fb, format);
  const mag = format === 'u8' ? v0 - 0x80 : format === 's32le' ? v0 / 256 : format === 'f32le' ? Math.round(v0 * 32768) : v0;
  res.first = mag - 1;
  let i = lead;
  for (; i < total; i++) {
    let ok = true;
    for (let c = 0; c < channels && ok; c++) ok = readSample(buf, i * fb + c * bytes, format) === counterValue(format, res.first + (i - lead), c);
    if (!ok) break;
  }
  res.frames = i - lead;
  for (; i < total; i++) {
    if (isSilent(buf, i * fb, format, channels)) res.tail++;
    else {
      res.bad++;
      if (res.firstBad < 0) res.firstBad = i;
    }
  }
  return res;
}

export interface CounterRun {
  /** counter index of the first non-silent frame (-1 if none) */
  first: number;
  /** non-silent frames, all of them the counter in order */
  frames: number;
  /** silent frames anywhere (lead, tail, or inserted by a client's underrun) */
  silent: number;
  /** non-silent frames that break the order (lost, duplicated or foreign frames) */
  bad: number;
  firstBad: number;
}

/**
 * Like checkCounter, but silence anywhere is allowed: a client that underruns
 * on a loaded machine gets silence inserted by its sound server, which is not
 * the loop's doing. Every non-silent frame must still continue the counter:
 * nothing lost, duplicated or reordered.
 */
export function checkCounterSkippingSilence(buf: Buffer, format: SampleFormat, channels: number): CounterRun {
  const bytes = FORMAT_INFO[format].bytes;
  const fb = bytes * channels;
  const total = Math.floor(buf.length / fb);
  const res: CounterRun = { first: -1, frames: 0, silent: 0, bad: 0, firstBad: -1 };
  let next = -1;
  for (let i = 0; i < total; i++) {
    if (isSilent(buf, i * fb, format, channels)) {
      res.silent++;
      continue;
    }
    if (next < 0) {
      const one = checkCounter(buf.subarray(i * fb, (i + 1) * fb), format, channels);
      next = res.first = one.first;
    }
    let ok = true;
    for (let c = 0; c < channels && ok; c++) ok = readSample(buf, i * fb + c * bytes, format) === counterValue(format, next, c);
    if (ok) {
      res.frames++;
      next++;
    } else {
      res.bad++;
      if (res.firstBad < 0) res.firstBad = i;
    }
  }
  return res;
}
