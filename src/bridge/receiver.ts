/**
 * `audioloop bridge N --receive rtp://BIND:PORT`: receives Opus over RTP and
 * plays it into loop N, whose server end it opens for writing (audioloopN
 * becomes a source that clients record from).
 *
 *   UDP ─▶ RTP decode ─▶ jitter buffer (jitter.ts) ─▶ Opus decode / PLC ─▶
 *     resampler (48 kHz ▶ loop rate, fractional ratio nudged by drift.ts) ─▶ loop
 *
 * Output clock: once a client records, PCM is written paced by the monotonic
 * clock (`lead` ms ahead of it; the loop's ring takes up timer jitter). The
 * headless PipeWire graph (Dummy-Driver) runs on the same clock; if the graph
 * is slower, backpressure from the loop holds the output and the pacing
 * re-anchors. The clock difference that matters, the RTP sender's versus
 * ours, shows as a slowly moving jitter-buffer fill, which the drift
 * controller cancels by resampling at 48000 * (1 + ppm/1e6) : rate.
 *
 * Loss: a missing packet is concealed by libopus PLC (decoding a TOC-only
 * packet, see rtp.ts opusPlcPacket). In-band FEC decoding is not available
 * through @discordjs/opus (it always decodes with decode_fec = 0), so FEC in
 * the stream is ignored; PLC covers the frame.
 *
 * End: when the loop's client goes away, writing fails with ECONNRESET and
 * run() resolves 'reset'; with `idleExitMs`, a stream that stops for that
 * long ends the bridge ('idle'), which closes the loop (the recording client's
 * stream ends).
 */
import * as dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { OpusEncoder } from '@discordjs/opus';
import { openServer, type LoopServer } from '../client';
import { isErrorWithCode, makeError } from '../errors';
import { defaultSocketDir } from '../protocol';
import { fromFloat32 } from '../dsp/convert';
import { Resampler } from '../dsp/resample';
import { decodeRtp, DYNAMIC_PT_MAX, DYNAMIC_PT_MIN, OPUS_RTP_CLOCK, opusPacketSamples, opusPlcPacket, type RtpPacket } from './rtp';
import { DEFAULT_JITTER, JitterBuffer, type JitterOptions } from './jitter';
import { DEFAULT_DRIFT, DriftController } from './drift';
import { MetricsReporter, type BridgeMetrics } from './metrics';

export interface ReceiverOptions {
  instance: number;
  bind: string;
  port: number;
  rate?: number;
  channels?: 1 | 2;
  /** accept only this payload type (default: the first dynamic one seen) */
  payloadType?: number;
  jitter?: Partial<JitterOptions>;
  /** drift compensation on (default) or off */
  drift?: boolean;
  /** how far ahead of the clock PCM is written to the loop, ms */
  leadMs?: number;
  /** end when no packet came for this long after the first one (0: never) */
  idleExitMs?: number;
  socketDir?: string;
  /** the latency the loop's node asks the sound server for, in ms */
  latencyMs?: number;
  /** give up (ETIMEDOUT) when no client starts within this many ms (OPEN wait=MS) */
  waitMs?: number;
  /** do not wait for a client: the loop's clock runs until one starts (OPEN clock=1) */
  clock?: boolean;
  metricsIntervalMs?: number;
}

const TICK_MS = 10;
/** denominator of the drift stage's ratio (see applyPpm) */
const DRIFT_DEN = 65000;
/** underrun frames in a row that are concealed; after that, silence (libopus PLC fades too slowly) */
const MAX_CONCEAL_EMPTY = 2;

export type ReceiverEnd = 'reset' | 'idle' | 'stopped';

export class RtpReceiver extends EventEmitter {
  private readonly rate: number;
  private readonly channels: 1 | 2;
  private readonly jb: JitterBuffer;
  private readonly drift = new DriftController(DEFAULT_DRIFT);
  private decoder: OpusEncoder;
  /** 48 kHz -> 48 kHz at a ratio nudged by the drift controller */
  private drifter: Resampler | null = null;
  /** 48 kHz -> the loop rate, when that differs */
  private resampler: Resampler | null = null;
  private srv: LoopServer | null = null;
  private sock: dgram.Socket | null = null;
  private pt: number | null;
  private ssrc: number | null = null;
  private lastToc = (31 << 3) | 4; // CELT FB 20 ms stereo until a packet tells
  private peer = '';
  private packets = 0;
  private bytes = 0;
  private badPackets = 0;
  private plcFrames = 0;
  private emptyPops = 0;
  private lastUpdate = 0;
  private lastPacketAt = 0;
  /** output: loop-rate interleaved float, produced but not yet written */
  private out: Float32Array = new Float32Array(0);
  private written = 0;
  private t0 = 0;
  private appliedStep = 0;
  private timer: NodeJS.Timeout | null = null;
  private reporter: MetricsReporter | null = null;
  private metricsTimer: NodeJS.Timeout | null = null;
  private finish: ((why: ReceiverEnd) => void) | null = null;
  private failure: ((e: Error) => void) | null = null;
  private ended = false;
  private waitingDrain = false;

  constructor(private readonly opts: ReceiverOptions) {
    super();
    this.rate = opts.rate ?? 48000;
    this.channels = opts.channels ?? 2;
    this.pt = opts.payloadType ?? null;
    this.jb = new JitterBuffer({ ...DEFAULT_JITTER, ...opts.jitter });
    if (isIP(opts.bind) === 0) throw makeError('EINVAL', 'bridge', `--receive needs a numeric IP address to bind, got "${opts.bind}"`);
    this.decoder = new OpusEncoder(OPUS_RTP_CLOCK, this.channels);
  }

  get server(): LoopServer | null {
    return this.srv;
  }

  /** the UDP port actually bound (useful with port 0) */
  get boundPort(): number {
    return this.sock?.address().port ?? 0;
  }

  async open(): Promise<void> {
    const socketDir = this.opts.socketDir ?? defaultSocketDir();
    if (this.opts.drift !== false) this.drifter = await Resampler.create({ channels: this.channels, inRate: OPUS_RTP_CLOCK, outRate: OPUS_RTP_CLOCK });
    if (this.rate !== OPUS_RTP_CLOCK) this.resampler = await Resampler.create({ channels: this.channels, inRate: OPUS_RTP_CLOCK, outRate: this.rate });
    this.sock = dgram.createSocket({ type: isIP(this.opts.bind) === 6 ? 'udp6' : 'udp4', recvBufferSize: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      this.sock!.once('error', reject);
      this.sock!.bind(this.opts.port, this.opts.bind, () => {
        this.sock!.off('error', reject);
        resolve();
      });
    });
    this.sock.on('error', (e) => this.emit('warning', e));
    this.sock.on('message', (msg, rinfo) => this.onDatagram(msg, `${rinfo.address}:${rinfo.port}`));
    try {
      this.srv = await openServer(this.opts.instance, { mode: 'write', format: 's16le', rate: this.rate, channels: this.channels, ...(this.opts.latencyMs !== undefined ? { latencyMs: this.opts.latencyMs } : {}), ...(this.opts.waitMs !== undefined ? { waitMs: this.opts.waitMs } : {}), ...(this.opts.clock ? { clock: true } : {}), app: 'audioloop bridge --receive', socketDir });
    } catch (e) {
      this.sock.close();
      this.sock = null;
      throw e;
    }
    const every = this.opts.metricsIntervalMs ?? 1000;
    if (every > 0) {
      this.reporter = new MetricsReporter(socketDir, this.srv.instance);
      this.metricsTimer = setInterval(() => this.reporter?.report(this.metrics()), every);
      this.metricsTimer.unref();
    }
  }

  private onDatagram(msg: Buffer, from: string): void {
    let p: RtpPacket;
    try {
      p = decodeRtp(msg);
    } catch {
      this.badPackets++;
      return;
    }
    if (this.pt === null) {
      if (p.payloadType < DYNAMIC_PT_MIN || p.payloadType > DYNAMIC_PT_MAX) {
        this.badPackets++;
        return;
      }
      this.pt = p.payloadType;
    } else if (p.payloadType !== this.pt) {
      this.badPackets++;
      return;
    }
    if (this.ssrc !== p.ssrc) {
      if (this.ssrc !== null) {
        this.jb.restart();
        this.decoder = new OpusEncoder(OPUS_RTP_CLOCK, this.channels);
      }
      this.ssrc = p.ssrc;
    }
    this.peer = from;
    this.packets++;
    this.bytes += msg.length;
    this.lastPacketAt = performance.now();
    this.jb.push(p, this.lastPacketAt, opusPacketSamples(p.payload));
  }

  /** Plays until the client goes away, the stream idles out, or stop(). */
  async run(): Promise<ReceiverEnd> {
    const srv = this.srv;
    if (!srv) throw makeError('EBADF', 'bridge', 'open() first');
    const result = new Promise<ReceiverEnd>((resolve, reject) => {
      this.finish = resolve;
      this.failure = reject;
    });
    srv.writable.on('error', (e) => this.onWriteError(e));
    srv.once('start', () => this.startOutput());
    // clock=1: the daemon consumes what we write until a client starts, so the output runs from now
    if (srv.client || srv.clock) this.startOutput();
    // idle watch also before a client starts
    this.timer = setInterval(() => this.checkIdle(), 100);
    try {
      return await result;
    } finally {
      await this.close();
    }
  }

  private onWriteError(e: Error): void {
    if (isErrorWithCode(e, 'ECONNRESET')) this.end('reset');
    else if (!this.ended) {
      this.ended = true;
      this.failure?.(e);
    }
  }

  private end(why: ReceiverEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.finish?.(why);
  }

  private checkIdle(): void {
    const idle = this.opts.idleExitMs ?? 0;
    if (idle > 0 && this.packets > 0 && performance.now() - this.lastPacketAt > idle) this.end('idle');
  }

  private startOutput(): void {
    if (this.t0) return;
    this.t0 = performance.now();
    this.written = 0;
    const tick = (): void => {
      if (this.ended) return;
      try {
        this.produce();
      } catch (e) {
        this.ended = true;
        this.failure?.(e as Error);
        return;
      }
      // produce in the check phase, after the poll phase has delivered the datagrams that
      // arrived meanwhile: after a stall of the event loop (a busy machine) the timer would
      // otherwise run first and find the jitter buffer empty
      this.timerOut = setTimeout(() => setImmediate(tick), TICK_MS);
    };
    tick();
  }

  private timerOut: NodeJS.Timeout | null = null;

  /** writes what the clock says is due (plus the lead) */
  private produce(): void {
    const srv = this.srv;
    if (!srv || this.waitingDrain) return;
    const lead = ((this.opts.leadMs ?? 60) * this.rate) / 1000;
    const due = Math.floor(((performance.now() - this.t0) * this.rate) / 1000 + lead) - this.written;
    if (due <= 0) return;
    const need = due * this.channels;
    while (this.out.length < need) this.decodeOne();
    // the controller samples the fill once per tick, at the same point of the cycle (after
    // production), and only while packets flow (not while buffering or in an underrun)
    const now = performance.now();
    if (this.drifter && this.jb.playing && this.emptyPops === 0) {
      this.applyPpm(this.drift.update(this.jb.fillMs(), this.jb.targetMs, this.lastUpdate ? (now - this.lastUpdate) / 1000 : 0));
    }
    this.lastUpdate = now;
    const chunk = this.out.subarray(0, need);
    this.out = this.out.slice(need);
    this.written += due;
    const ok = srv.writable.write(fromFloat32(chunk, 's16le'));
    if (!ok) {
      // the loop is full: the graph consumes slower than our clock; wait and re-anchor
      this.waitingDrain = true;
      srv.writable.once('drain', () => {
        this.waitingDrain = false;
        this.t0 = performance.now() - (this.written * 1000) / this.rate + (this.opts.leadMs ?? 60);
      });
    }
  }

  /** one frame from the jitter buffer through the decoder and the resampler into `out` */
  private decodeOne(): void {
    const item = this.jb.pop();
    let pcm: Buffer;
    switch (item.kind) {
      case 'packet':
        this.emptyPops = 0;
        try {
          pcm = this.decoder.decode(item.payload);
          this.lastToc = item.payload[0] ?? this.lastToc;
        } catch {
          pcm = this.conceal(item.samples);
        }
        break;
      case 'lost':
        pcm = this.conceal(item.samples);
        break;
      case 'empty':
        // a short underrun is concealed; once the stream has stopped (or stalls), silence
        pcm = ++this.emptyPops <= MAX_CONCEAL_EMPTY ? this.conceal(item.samples) : Buffer.alloc(item.samples * this.channels * 2);
        break;
      case 'buffering':
        pcm = Buffer.alloc(item.samples * this.channels * 2);
        break;
    }
    const f = new Float32Array(pcm.length / 2);
    for (let i = 0; i < f.length; i++) f[i] = pcm.readInt16LE(i * 2) / 32768;
    const d = this.drifter ? this.drifter.process(f) : f;
    const r = this.resampler ? this.resampler.process(d) : d;
    const n = new Float32Array(this.out.length + r.length);
    n.set(this.out);
    n.set(r, this.out.length);
    this.out = n;
  }

  /** Opus PLC for `samples` (decoding a TOC-only packet per frame of the last packet's duration) */
  private conceal(samples: number): Buffer {
    this.plcFrames++;
    const parts: Buffer[] = [];
    let got = 0;
    while (got < samples) {
      let b: Buffer;
      try {
        b = this.decoder.decode(opusPlcPacket(this.lastToc));
      } catch {
        b = Buffer.alloc((samples - got) * this.channels * 2);
      }
      const n = b.length / (2 * this.channels);
      if (n === 0) break;
      parts.push(b);
      got += n;
    }
    return Buffer.concat(parts).subarray(0, samples * this.channels * 2);
  }

  /**
   * Nudges the drift resampler's fractional rate: in:out = (D + step) : D
   * with D = DRIFT_DEN, so one step is 1e6 / D ppm (about 15 ppm). Speex
   * rescales its fractional position by new_den / old_den in 32-bit
   * arithmetic (and fails with an overflow beyond), so the denominator must
   * stay below 2^16; that is why the drift stage runs 48 kHz -> 48 kHz and a
   * fixed second stage converts to other loop rates. The PI controller's
   * integral makes the applied step toggle between neighbours so that the
   * average follows the drift closely.
   */
  private applyPpm(ppm: number): void {
    if (!this.drifter) return;
    const step = Math.round((ppm * DRIFT_DEN) / 1e6);
    if (step === this.appliedStep) return;
    this.appliedStep = step;
    this.drifter.setRateFrac(DRIFT_DEN + step, DRIFT_DEN, OPUS_RTP_CLOCK, OPUS_RTP_CLOCK);
  }

  metrics(): BridgeMetrics {
    const j = this.jb.stats();
    return {
      role: 'receive',
      peer: this.peer,
      packets: this.packets,
      bytes: this.bytes,
      lost: j.lost,
      lossRate: j.lost + j.received > 0 ? j.lost / (j.lost + j.received) : 0,
      late: j.late,
      duplicates: j.duplicates,
      reordered: j.reordered,
      jitterMs: j.jitterMs,
      driftPpm: this.drift.driftPpm,
      ratePpm: this.drift.ppm,
      fillMs: j.fillMs,
      targetMs: j.targetMs,
      plcFrames: this.plcFrames,
      underruns: j.underruns,
    };
  }

  stop(): void {
    this.end('stopped');
  }

  private async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.timerOut) clearTimeout(this.timerOut);
    if (this.metricsTimer) clearInterval(this.metricsTimer);
    this.timer = this.timerOut = this.metricsTimer = null;
    if (this.reporter) {
      this.reporter.report(this.metrics());
      this.reporter.close();
      this.reporter = null;
    }
    if (this.sock) {
      const s = this.sock;
      this.sock = null;
      await new Promise<void>((r) => s.close(() => r()));
    }
    if (this.srv) {
      const srv = this.srv;
      if (srv.error || !srv.client) srv.writable.destroy();
      await srv.close();
    }
    this.drifter?.destroy();
    this.resampler?.destroy();
  }
}

