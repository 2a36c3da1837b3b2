/**
 * Tone analysis for recordings made by real programs: where the tone is
 * (not silent), how long it lasts and its frequency (rising zero crossings,
 * interpolated). Channel 0 of interleaved s16le/s24le/s32le/f32le/u8 PCM.
 */
import assert from 'node:assert/strict';
import { FORMAT_INFO, type PcmFormat } from '../../src/format';
import { readSample } from './pcm';

export interface Tone {
  /** first and last frame above the threshold */
  start: number;
  end: number;
  /** seconds from start to end */
  seconds: number;
  /** Hz, over the middle of the tone */
  freq: number;
  /** peak |x| in the tone, 0-1 of full scale */
  peak: number;
  /** frames in the whole buffer */
  total: number;
}

function normalized(buf: Buffer, off: number, fmt: PcmFormat): number {
  const v = readSample(buf, off, fmt.format);
  switch (fmt.format) {
    case 'u8':
      return (v - 128) / 128;
    case 's16le':
      return v / 32768;
    case 's24le':
      return v / 8388608;
    case 's32le':
      return v / 2147483648;
    case 'f32le':
      return v;
  }
}

export function analyzeTone(pcm: Buffer, fmt: PcmFormat, threshold = 0.02): Tone {
  const fb = FORMAT_INFO[fmt.format].bytes * fmt.channels;
  const total = Math.floor(pcm.length / fb);
  const x = new Float64Array(total);
  for (let i = 0; i < total; i++) x[i] = normalized(pcm, i * fb, fmt);
  let start = -1;
  let end = -1;
  let peak = 0;
  for (let i = 0; i < total; i++) {
    const a = Math.abs(x[i]!);
    if (a > threshold) {
      if (start < 0) start = i;
      end = i;
    }
  }
  if (start < 0) return { start: -1, end: -1, seconds: 0, freq: 0, peak: 0, total };
  for (let i = start; i <= end; i++) peak = Math.max(peak, Math.abs(x[i]!));
  // frequency over the middle 80 %
  const from = start + Math.floor((end - start) * 0.1);
  const to = end - Math.floor((end - start) * 0.1);
  let first = -1;
  let last = -1;
  let n = 0;
  for (let i = from + 1; i <= to; i++) {
    if (x[i - 1]! < 0 && x[i]! >= 0) {
      const t = i - 1 + -x[i - 1]! / (x[i]! - x[i - 1]!);
      if (first < 0) first = t;
      else n++;
      last = t;
    }
  }
  const freq = n > 0 ? (n * fmt.rate) / (last - first) : 0;
  return { start, end, seconds: (end - start + 1) / fmt.rate, freq, peak, total };
}

/** asserts a tone of `freq` Hz (within 0.5 %) lasting more than `minSeconds` in `pcm` */
export function assertTone(pcm: Buffer, fmt: PcmFormat, freq: number, minSeconds: number, what: string): void {
  const t = analyzeTone(pcm, fmt);
  const info = `${what}: ${JSON.stringify(t)}`;
  assert.ok(Math.abs(t.freq - freq) < freq * 0.005, `${freq} Hz: ${info}`);
  assert.ok(t.seconds > minSeconds, `the tone: ${info}`);
}
