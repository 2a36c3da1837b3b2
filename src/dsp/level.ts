/**
 * Peak level meter for interleaved PCM, as level meters in mixers show it:
 * the peak of each block is taken at once, held for 300 ms, then the shown
 * value falls by 20 dB/s while nothing louder arrives.
 * No allocation per block; samples are decoded from bytes directly, so
 * unaligned buffers from sockets need no copy.
 */
import { FORMAT_INFO, type SampleFormat } from '../format';

/** the level reported for digital silence */
export const SILENCE_DB = -120;

/** Peak of one block per channel, as linear amplitude 0..1 (written into `out`). */
export function blockPeaks(buf: Uint8Array, format: SampleFormat, channels: number, out: Float64Array): void {
  const bytes = FORMAT_INFO[format].bytes;
  const fb = bytes * channels;
  const frames = Math.floor(buf.length / fb);
  out.fill(0);
  for (let c = 0; c < channels; c++) {
    let peak = 0;
    let off = c * bytes;
    switch (format) {
      case 'u8':
        for (let i = 0; i < frames; i++, off += fb) {
          const v = Math.abs(buf[off]! - 128);
          if (v > peak) peak = v;
        }
        out[c] = peak / 128;
        break;
      case 's16le':
        for (let i = 0; i < frames; i++, off += fb) {
          const v = Math.abs(((buf[off]! | (buf[off + 1]! << 8)) << 16) >> 16);
          if (v > peak) peak = v;
        }
        out[c] = peak / 32768;
        break;
      case 's24le':
        for (let i = 0; i < frames; i++, off += fb) {
          const v = Math.abs(((buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16)) << 8) >> 8);
          if (v > peak) peak = v;
        }
        out[c] = peak / 8388608;
        break;
      case 's32le':
        for (let i = 0; i < frames; i++, off += fb) {
          const v = Math.abs(buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24));
          if (v > peak) peak = v;
        }
        out[c] = peak / 2147483648;
        break;
      case 'f32le': {
        const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        for (let i = 0; i < frames; i++, off += fb) {
          const v = Math.abs(dv.getFloat32(off, true));
          if (v > peak) peak = v; // NaN never wins
        }
        out[c] = peak;
        break;
      }
    }
  }
}

export function toDb(amplitude: number): number {
  return amplitude > 0 ? Math.max(SILENCE_DB, 20 * Math.log10(amplitude)) : SILENCE_DB;
}

export class PeakMeter {
  /** the peak amplitude of each channel and when it was taken */
  private readonly peak: Float64Array;
  private readonly at: Float64Array;
  private readonly block: Float64Array;

  /**
   * A peak is held for `holdMs`, then falls by `fallDbPerSec` until something
   * louder arrives. `now` is a millisecond clock (injectable for tests).
   */
  constructor(
    readonly format: SampleFormat,
    readonly channels: number,
    private readonly now: () => number = () => performance.now(),
    private readonly fallDbPerSec = 20,
    private readonly holdMs = 300,
  ) {
    this.peak = new Float64Array(channels);
    this.at = new Float64Array(channels);
    this.block = new Float64Array(channels);
  }

  private current(c: number, t: number): number {
    const falling = Math.max(0, t - this.at[c]! - this.holdMs) / 1000;
    return this.peak[c]! * Math.pow(10, (-this.fallDbPerSec * falling) / 20);
  }

  /** takes one block of interleaved PCM */
  update(buf: Uint8Array): void {
    const t = this.now();
    blockPeaks(buf, this.format, this.channels, this.block);
    for (let c = 0; c < this.channels; c++) {
      const p = this.block[c]!;
      if (p > 0 && p >= this.current(c, t)) {
        this.peak[c] = p;
        this.at[c] = t;
      }
    }
  }

  /** the shown level of each channel in dBFS (SILENCE_DB for silence) */
  levelsDb(): number[] {
    const t = this.now();
    const out: number[] = [];
    for (let c = 0; c < this.channels; c++) out.push(Math.round(toDb(this.current(c, t)) * 10) / 10);
    return out;
  }
}
