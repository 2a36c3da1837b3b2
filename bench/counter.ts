/**
 * The counter-timestamp method. A writer produces s16le stereo frames that
 * carry their own index k (k = 1, 2, ...: left = k mod 2^15, right =
 * floor(k / 2^15) mod 2^15; both non-negative, so only k = 0 mod 2^30 is
 * silence), paced at real time, and logs when each block was handed over.
 * A reader decodes every frame it receives: the latency of frame k is the
 * time it was received minus the time it was written; gaps and repeats of k
 * are lost and duplicated frames. The values survive the sound server's
 * float path bit-exactly (|v| < 2^15, volume 1.0).
 */
import { performance } from 'node:perf_hooks';

export const RATE = 48000;
export const CHANNELS = 2;
export const FRAME_BYTES = 4; // s16le stereo

export function encodeFrames(first: number, count: number): Buffer {
  const buf = Buffer.allocUnsafe(count * FRAME_BYTES);
  for (let i = 0; i < count; i++) {
    const k = first + i;
    buf.writeInt16LE(k & 0x7fff, i * 4);
    buf.writeInt16LE(Math.floor(k / 32768) & 0x7fff, i * 4 + 2);
  }
  return buf;
}

/** The time base shared by writer and reader (ms, monotonic). */
export function now(): number {
  return performance.now();
}

/**
 * Writes counter frames to `sink` at real time from start() on: every tick it
 * hands over all frames whose time has come. Never drops frames.
 */
export class CounterWriter {
  /** next frame index to write */
  next = 1;
  private t0 = 0;
  private timer: NodeJS.Timeout | null = null;
  /** block log: first frame index of each block and the time it was written */
  private logFrame: number[] = [];
  private logTime: number[] = [];

  /**
   * `leadFrames`: written at once on start() (a prefill that keeps a client's
   * buffer from running dry when this process is late on a loaded machine;
   * it adds its length to the measured latency, so latency runs use 0).
   */
  constructor(private readonly sink: (buf: Buffer) => void, private readonly leadFrames = 0, private readonly tickMs = 2) {}

  start(): void {
    this.t0 = now() - (this.leadFrames * 1000) / RATE;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.tick();
  }

  private tick(): void {
    const t = now();
    const due = 1 + Math.floor(((t - this.t0) * RATE) / 1000);
    if (due <= this.next) return;
    const n = due - this.next;
    this.logFrame.push(this.next);
    this.logTime.push(t);
    this.sink(encodeFrames(this.next, n));
    this.next = due;
  }

  /** Stops writing; returns the number of frames written (the last index). */
  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.next - 1;
  }

  get written(): number {
    return this.next - 1;
  }

  /** When frame k was written (ms), or NaN if it was not. */
  writeTime(k: number): number {
    const f = this.logFrame;
    if (k < 1 || k >= this.next || f.length === 0) return NaN;
    let lo = 0;
    let hi = f.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (f[mid]! <= k) lo = mid;
      else hi = mid - 1;
    }
    return this.logTime[lo]!;
  }
}

export interface CounterStats {
  /** counter frames received */
  frames: number;
  /** first and last index seen */
  first: number;
  last: number;
  /** frames missing between received ones (forward jumps) */
  lost: number;
  /** frames received again or out of order (backward jumps, repeats) */
  duplicated: number;
  /** silent frames between the first and the last counter frame */
  silenceInserted: number;
  /** silent frames before the first counter frame */
  leadingSilence: number;
}

/**
 * Decodes received PCM (in any chunking), checks the sequence and samples
 * the latency of every `stride`-th frame against the writer's log.
 */
export class CounterReader {
  readonly stats: CounterStats = { frames: 0, first: -1, last: -1, lost: 0, duplicated: 0, silenceInserted: 0, leadingSilence: 0 };
  /** latency samples in ms */
  readonly latencies: number[] = [];
  private carry: Buffer = Buffer.alloc(0);
  private silentRun = 0;

  constructor(private readonly writer: CounterWriter, private readonly stride = 48) {}

  feed(chunk: Buffer, t = now()): void {
    let buf = chunk;
    if (this.carry.length) {
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = Buffer.alloc(0);
    }
    const n = Math.floor(buf.length / FRAME_BYTES);
    const s = this.stats;
    for (let i = 0; i < n; i++) {
      const l = buf.readInt16LE(i * 4);
      const r = buf.readInt16LE(i * 4 + 2);
      if (l === 0 && r === 0) {
        if (s.first < 0) s.leadingSilence++;
        else this.silentRun++;
        continue;
      }
      const k = (r & 0x7fff) * 32768 + (l & 0x7fff);
      if (s.first < 0) {
        s.first = k;
        // frames before the first one received never arrived
        s.lost += k - 1;
      } else {
        // silence between counter frames only counts once more counter frames follow
        s.silenceInserted += this.silentRun;
        if (k === s.last + 1) {
          /* in order */
        } else if (k > s.last + 1) s.lost += k - s.last - 1;
        else s.duplicated++;
      }
      this.silentRun = 0;
      if (k > s.last) s.last = k;
      s.frames++;
      if (k % this.stride === 0) {
        const tw = this.writer.writeTime(k);
        if (tw === tw) this.latencies.push(t - tw);
      }
    }
    const rest = buf.length - n * FRAME_BYTES;
    if (rest) this.carry = Buffer.from(buf.subarray(n * FRAME_BYTES));
  }

  /** Frames missing at the end: written but never received. */
  missingAtEnd(): number {
    return Math.max(0, this.writer.written - Math.max(this.stats.last, 0));
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export interface LatencySummary {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
}

export function summarize(lat: number[]): LatencySummary {
  const s = [...lat].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  const r = (x: number): number => Math.round(x * 100) / 100;
  return {
    samples: s.length,
    p50Ms: r(percentile(s, 50)),
    p99Ms: r(percentile(s, 99)),
    minMs: r(s[0] ?? NaN),
    maxMs: r(s[s.length - 1] ?? NaN),
    meanMs: r(mean),
  };
}
