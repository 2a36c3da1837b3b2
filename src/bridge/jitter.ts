/**
 * The receive-side jitter buffer: RTP packets go in as they arrive (any
 * order, duplicates, gaps, 16-bit sequence and 32-bit timestamp wrap-around),
 * frames come out in sequence order when the output needs audio.
 *
 * Pure logic with no clock of its own: callers pass arrival times in ms, so
 * unit tests can drive it with simulated time.
 *
 *   buffering --fill >= target--> playing --long underrun / stream restart--> buffering
 *
 * pop() while playing:
 *   - the next packet is there            -> { kind: 'packet' }
 *   - it is missing but later ones are    -> { kind: 'lost' }   (conceal; a packet that comes
 *                                                                after its turn is dropped as late)
 *   - nothing is buffered                 -> { kind: 'empty' }  (conceal without consuming a
 *                                                                sequence number: latency grows
 *                                                                rather than dropping the packet
 *                                                                when it does arrive)
 * When the fill runs far above the target (a burst after a stall), the oldest
 * packets are discarded down to the target; small differences are the drift
 * controller's job (src/bridge/drift.ts).
 *
 * Target: fixed, or adaptive: one packet duration plus the 95th percentile of
 * the relative transit delay over the last few seconds, plus a 20 ms margin,
 * clamped to [minMs, maxMs].
 */
import { OPUS_RTP_CLOCK, Unwrapper, type RtpPacket } from './rtp';

export interface JitterOptions {
  mode: 'fixed' | 'adaptive';
  /** fixed: the target fill; adaptive: the starting target (ms) */
  targetMs: number;
  /** adaptive bounds (ms) */
  minMs: number;
  maxMs: number;
  /** timestamp clock (48000 for Opus) */
  clock?: number;
}

export const DEFAULT_JITTER: JitterOptions = { mode: 'adaptive', targetMs: 60, minMs: 20, maxMs: 400 };

export type PushResult = 'ok' | 'duplicate' | 'late' | 'restart';

export type Popped =
  | { kind: 'packet'; seq: number; payload: Buffer; samples: number }
  | { kind: 'lost'; seq: number; samples: number; /** the packet after the lost one, if buffered (for FEC) */ next: Buffer | null }
  | { kind: 'empty'; samples: number }
  | { kind: 'buffering'; samples: number };

export interface JitterStats {
  received: number;
  duplicates: number;
  late: number;
  /** sequence numbers never received in time (played as concealment) */
  lost: number;
  /** packets that arrived with a lower sequence number than one before them */
  reordered: number;
  /** packets thrown away to bring an overfull buffer back to its target */
  discarded: number;
  /** pops that found the buffer empty */
  underruns: number;
  restarts: number;
  /** RFC 3550 interarrival jitter, ms */
  jitterMs: number;
  fillMs: number;
  targetMs: number;
  state: 'buffering' | 'playing';
}

interface Entry {
  seq: number;
  ts: number;
  samples: number;
  payload: Buffer;
}

/** how many sequence numbers ahead of the playout point a packet may be before it counts as a restart */
const MAX_SEQ_JUMP = 3000;
/** adaptive target: headroom over the measured spread (our own output timer jitters too) */
const MARGIN_MS = 20;
/** transit samples kept for the adaptive target */
const WINDOW = 250;

export class JitterBuffer {
  private readonly clock: number;
  private readonly entries = new Map<number, Entry>();
  private seqU = new Unwrapper(16);
  private tsU = new Unwrapper(32);
  private state: 'buffering' | 'playing' = 'buffering';
  /** extended seq / ts of the next frame to play (playing state) */
  private nextSeq = 0;
  private nextTs = 0;
  private highestSeq: number | null = null;
  private maxEnd = -Infinity;
  private lastSamples = 960;
  private emptyRun = 0;
  private target: number;
  private readonly transits: number[] = [];
  private prevTransit: number | null = null;
  private jitter = 0; // RFC 3550, in timestamp units
  private readonly st = { received: 0, duplicates: 0, late: 0, lost: 0, reordered: 0, discarded: 0, underruns: 0, restarts: 0 };

  constructor(private readonly opts: JitterOptions = DEFAULT_JITTER) {
    this.clock = opts.clock ?? OPUS_RTP_CLOCK;
    if (!(opts.minMs <= opts.targetMs && opts.targetMs <= opts.maxMs)) throw new RangeError(`jitter target ${opts.targetMs} ms outside [${opts.minMs}, ${opts.maxMs}]`);
    this.target = opts.targetMs;
  }

  private ms(samples: number): number {
    return (samples * 1000) / this.clock;
  }

  /** Adds a packet that arrived at `arrivalMs`; `samples` is its duration at the timestamp clock. */
  push(p: RtpPacket, arrivalMs: number, samples: number): PushResult {
    let seq = this.seqU.unwrap(p.seq);
    let ts = this.tsU.unwrap(p.timestamp);
    let result: PushResult = 'ok';
    if (this.state === 'playing' && (seq - this.nextSeq > MAX_SEQ_JUMP || this.nextSeq - seq > MAX_SEQ_JUMP)) {
      this.restart();
      result = 'restart';
      seq = this.seqU.unwrap(p.seq);
      ts = this.tsU.unwrap(p.timestamp);
    }
    if (this.entries.has(seq)) {
      this.st.duplicates++;
      return 'duplicate';
    }
    if (this.state === 'playing' && seq < this.nextSeq) {
      this.st.late++;
      return 'late';
    }
    this.st.received++;
    if (this.highestSeq !== null && seq < this.highestSeq) this.st.reordered++;
    if (this.highestSeq === null || seq > this.highestSeq) this.highestSeq = seq;
    if (samples > 0) this.lastSamples = samples;
    this.entries.set(seq, { seq, ts, samples: samples > 0 ? samples : this.lastSamples, payload: p.payload });
    this.maxEnd = Math.max(this.maxEnd, ts + (samples > 0 ? samples : this.lastSamples));
    this.observeTransit(arrivalMs, ts);
    if (this.state === 'buffering') this.trimBuffering();
    return result;
  }

  /** RFC 3550 A.8 jitter, and the transit window for the adaptive target */
  private observeTransit(arrivalMs: number, ts: number): void {
    const transit = (arrivalMs * this.clock) / 1000 - ts;
    if (this.prevTransit !== null) {
      const d = Math.abs(transit - this.prevTransit);
      this.jitter += (d - this.jitter) / 16;
    }
    this.prevTransit = transit;
    this.transits.push(transit);
    if (this.transits.length > WINDOW) this.transits.shift();
    if (this.opts.mode === 'adaptive' && this.transits.length >= 10) {
      const sorted = [...this.transits].sort((a, b) => a - b);
      const spread = sorted[Math.floor(0.95 * (sorted.length - 1))]! - sorted[0]!;
      const want = this.ms(this.lastSamples) + this.ms(spread) + MARGIN_MS;
      this.target = Math.min(this.opts.maxMs, Math.max(this.opts.minMs, want));
    }
  }

  /** fill above which the oldest packets are discarded (a burst after a stall, or no output running yet) */
  private highMs(): number {
    return this.target + Math.max(this.target, 3 * this.ms(this.lastSamples));
  }

  /** discards the oldest packets down to the target plus one packet */
  private trim(): void {
    if (this.fillMs() <= this.highMs()) return;
    while (this.entries.size > 1 && this.fillMs() > this.target + this.ms(this.lastSamples)) this.dropOldest();
  }

  /** while buffering (e.g. no client records yet), keep latency bounded */
  private trimBuffering(): void {
    this.trim();
  }

  private dropOldest(): void {
    let min = Infinity;
    for (const s of this.entries.keys()) if (s < min) min = s;
    const e = this.entries.get(min);
    this.entries.delete(min);
    this.st.discarded++;
    if (this.state === 'playing' && e) {
      this.nextSeq = min + 1;
      this.nextTs = e.ts + e.samples;
    }
  }

  /** forgets the stream (new SSRC, or a jump in sequence numbers): the next packet starts afresh */
  restart(): void {
    this.entries.clear();
    this.seqU = new Unwrapper(16);
    this.tsU = new Unwrapper(32);
    this.state = 'buffering';
    this.highestSeq = null;
    this.maxEnd = -Infinity;
    this.emptyRun = 0;
    this.prevTransit = null;
    this.transits.length = 0;
    this.st.restarts++;
  }

  /** Audio buffered ahead of the playout point, in ms (gaps count: they are concealed). */
  fillMs(): number {
    if (this.entries.size === 0) return 0;
    let start: number;
    if (this.state === 'playing') start = this.nextTs;
    else {
      start = Infinity;
      for (const e of this.entries.values()) if (e.ts < start) start = e.ts;
    }
    return Math.max(0, this.ms(this.maxEnd - start));
  }

  get targetMs(): number {
    return this.target;
  }

  get playing(): boolean {
    return this.state === 'playing';
  }

  /** The next frame for the output, in sequence order. */
  pop(): Popped {
    if (this.state === 'buffering') {
      if (this.entries.size === 0 || this.fillMs() < this.target) return { kind: 'buffering', samples: this.lastSamples };
      let first: Entry | null = null;
      for (const e of this.entries.values()) if (!first || e.seq < first.seq) first = e;
      this.state = 'playing';
      this.nextSeq = first!.seq;
      this.nextTs = first!.ts;
      this.emptyRun = 0;
    }
    // far too much buffered (a burst after a stall): discard the oldest down to the target
    this.trim();

    const e = this.entries.get(this.nextSeq);
    if (e) {
      this.entries.delete(this.nextSeq);
      this.nextSeq++;
      this.nextTs = e.ts + e.samples;
      this.emptyRun = 0;
      return { kind: 'packet', seq: e.seq, payload: e.payload, samples: e.samples };
    }
    if (this.entries.size > 0) {
      const seq = this.nextSeq++;
      this.st.lost++;
      // the timestamp of the next buffered packet tells how long the gap is; assume packets of equal length
      this.nextTs += this.lastSamples;
      this.emptyRun = 0;
      return { kind: 'lost', seq, samples: this.lastSamples, next: this.entries.get(this.nextSeq)?.payload ?? null };
    }
    this.st.underruns++;
    this.emptyRun += this.lastSamples;
    if (this.ms(this.emptyRun) >= Math.max(this.opts.maxMs, 500)) {
      // the stream stopped: start over when it comes back
      this.state = 'buffering';
      this.seqU = new Unwrapper(16);
      this.tsU = new Unwrapper(32);
      this.highestSeq = null;
      this.maxEnd = -Infinity;
    }
    return { kind: 'empty', samples: this.lastSamples };
  }

  stats(): JitterStats {
    return {
      ...this.st,
      jitterMs: this.ms(this.jitter),
      fillMs: this.fillMs(),
      targetMs: this.target,
      state: this.state,
    };
  }
}
