/**
 * `audioloop bridge N --send rtp://HOST:PORT`: opens the server end of loop N
 * for reading (audioloopN becomes a sink), encodes what clients play as Opus
 * (20 ms frames, 48 kHz; other loop rates are resampled first) and sends it as
 * RTP (RFC 3550 / RFC 7587): one Opus packet per RTP packet, a dynamic payload
 * type, a random SSRC, sequence number and timestamp origin, the timestamp
 * advancing 960 per packet, the marker bit on the first packet.
 *
 * End: when the loop's client goes away the server end reads ECONNRESET after
 * the last byte; the sender encodes and sends what is left (the last frame
 * padded with silence), sends nothing more, and resolves (exit code 0).
 */
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { OpusEncoder } from '@discordjs/opus';
import { openServer, type LoopServer } from '../client';
import { isErrorWithCode, makeError } from '../errors';
import { defaultSocketDir } from '../protocol';
import { toFloat32 } from '../dsp/convert';
import { Resampler } from '../dsp/resample';
import { encodeRtp, OPUS_RTP_CLOCK, randomU32 } from './rtp';
import { formatOpusSdp } from './sdp';
import { MetricsReporter, type BridgeMetrics } from './metrics';

export const FRAME_MS = 20;
export const OPUS_FRAME = (OPUS_RTP_CLOCK * FRAME_MS) / 1000; // 960

export interface SenderOptions {
  instance: number;
  host: string;
  port: number;
  /** the loop's rate (what clients see); resampled to 48 kHz for Opus */
  rate?: number;
  channels?: 1 | 2;
  bitrate?: number;
  payloadType?: number;
  /** write an SDP describing the stream here */
  sdpFile?: string;
  socketDir?: string;
  /** the latency the loop's node asks the sound server for, in ms */
  latencyMs?: number;
  /** give up (ETIMEDOUT) when no client starts within this many ms (OPEN wait=MS) */
  waitMs?: number;
  /** do not wait for a client: the loop's clock runs until one starts (OPEN clock=1) */
  clock?: boolean;
  ssrc?: number;
  /** report metrics to the daemon every this many ms (0: never) */
  metricsIntervalMs?: number;
}

export interface SenderStats {
  packets: number;
  bytes: number;
  frames: number;
}

export class RtpSender extends EventEmitter {
  readonly ssrc: number;
  private seq = randomU32() & 0xffff;
  private timestamp = randomU32();
  private first = true;
  private readonly channels: 1 | 2;
  private readonly rate: number;
  private readonly pt: number;
  private srv: LoopServer | null = null;
  private sock: dgram.Socket | null = null;
  private encoder: OpusEncoder;
  private resampler: Resampler | null = null;
  /** 48 kHz interleaved float samples not yet encoded */
  private pending: Float32Array = new Float32Array(0);
  private readonly st: SenderStats = { packets: 0, bytes: 0, frames: 0 };
  private reporter: MetricsReporter | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** datagrams handed to the socket, not yet sent (close() waits for them) */
  private inflight = 0;

  constructor(private readonly opts: SenderOptions) {
    super();
    this.channels = opts.channels ?? 2;
    this.rate = opts.rate ?? 48000;
    this.pt = opts.payloadType ?? 96;
    this.ssrc = opts.ssrc ?? randomU32();
    if (isIP(opts.host) === 0) throw makeError('EINVAL', 'bridge', `--send needs a numeric IP address, got "${opts.host}"`);
    this.encoder = new OpusEncoder(OPUS_RTP_CLOCK, this.channels);
    this.encoder.setBitrate(opts.bitrate ?? 64000 * this.channels);
  }

  get stats(): SenderStats {
    return { ...this.st };
  }

  /** The server end of the loop, once open. */
  get server(): LoopServer | null {
    return this.srv;
  }

  /** Opens the loop and the UDP socket, writes the SDP; resolves when the loop is open. */
  async open(): Promise<void> {
    const socketDir = this.opts.socketDir ?? defaultSocketDir();
    this.srv = await openServer(this.opts.instance, { mode: 'read', format: 's16le', rate: this.rate, channels: this.channels, ...(this.opts.latencyMs !== undefined ? { latencyMs: this.opts.latencyMs } : {}), ...(this.opts.waitMs !== undefined ? { waitMs: this.opts.waitMs } : {}), ...(this.opts.clock ? { clock: true } : {}), app: 'audioloop bridge --send', socketDir });
    if (this.rate !== OPUS_RTP_CLOCK) this.resampler = await Resampler.create({ channels: this.channels, inRate: this.rate, outRate: OPUS_RTP_CLOCK });
    this.sock = dgram.createSocket(isIP(this.opts.host) === 6 ? 'udp6' : 'udp4');
    this.sock.on('error', (e) => this.emit('warning', e));
    await new Promise<void>((resolve, reject) => {
      this.sock!.once('error', reject);
      this.sock!.connect(this.opts.port, this.opts.host, () => {
        this.sock!.off('error', reject);
        resolve();
      });
    });
    if (this.opts.sdpFile) {
      const sdp = formatOpusSdp({
        address: this.opts.host,
        port: this.opts.port,
        payloadType: this.pt,
        channels: this.channels,
        ptimeMs: FRAME_MS,
        name: `audioloop${this.opts.instance}`,
        ssrc: this.ssrc,
      });
      const tmp = `${this.opts.sdpFile}.tmp${process.pid}`;
      fs.writeFileSync(tmp, sdp);
      fs.renameSync(tmp, this.opts.sdpFile);
    }
    const every = this.opts.metricsIntervalMs ?? 1000;
    if (every > 0) {
      this.reporter = new MetricsReporter(socketDir, this.srv.instance);
      this.timer = setInterval(() => this.reporter?.report(this.metrics()), every);
      this.timer.unref();
    }
  }

  /**
   * Streams until the loop's client goes away (resolves with 'reset') or
   * stop() is called (resolves with 'stopped'). Other errors reject.
   */
  async run(): Promise<'reset' | 'stopped'> {
    const srv = this.srv;
    if (!srv) throw makeError('EBADF', 'bridge', 'open() first');
    try {
      for await (const chunk of srv.readable) this.onPcm(chunk as Buffer);
    } catch (e) {
      if (!isErrorWithCode(e, 'ECONNRESET')) {
        if (this.stopped) return 'stopped';
        throw e;
      }
      this.flush();
      return 'reset';
    } finally {
      await this.close();
    }
    return 'stopped';
  }

  private onPcm(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    let f = toFloat32(chunk, 's16le');
    if (this.resampler) f = this.resampler.process(f);
    this.append(f);
    this.encodeFull();
  }

  private append(f: Float32Array): void {
    if (f.length === 0) return;
    const n = new Float32Array(this.pending.length + f.length);
    n.set(this.pending);
    n.set(f, this.pending.length);
    this.pending = n;
  }

  private encodeFull(): void {
    const need = OPUS_FRAME * this.channels;
    let off = 0;
    while (this.pending.length - off >= need) {
      this.sendFrame(this.pending.subarray(off, off + need));
      off += need;
    }
    if (off) this.pending = this.pending.slice(off);
  }

  /** the tail: the resampler's delay line and a last partial frame padded with silence */
  private flush(): void {
    if (this.resampler) this.append(this.resampler.flush());
    this.encodeFull();
    if (this.pending.length > 0) {
      const last = new Float32Array(OPUS_FRAME * this.channels);
      last.set(this.pending);
      this.pending = new Float32Array(0);
      this.sendFrame(last);
    }
  }

  private sendFrame(f: Float32Array): void {
    const pcm = Buffer.allocUnsafe(f.length * 2);
    for (let i = 0; i < f.length; i++) {
      const v = Math.round(f[i]! * 32768);
      pcm.writeInt16LE(v > 32767 ? 32767 : v < -32768 ? -32768 : v, i * 2);
    }
    const payload = this.encoder.encode(pcm);
    const pkt = encodeRtp({ payloadType: this.pt, marker: this.first, seq: this.seq, timestamp: this.timestamp, ssrc: this.ssrc, payload });
    this.first = false;
    this.seq = (this.seq + 1) & 0xffff;
    this.timestamp = (this.timestamp + OPUS_FRAME) >>> 0;
    this.st.packets++;
    this.st.bytes += pkt.length;
    this.st.frames += OPUS_FRAME;
    if (this.sock) {
      this.inflight++;
      this.sock.send(pkt, () => {
        if (--this.inflight === 0) this.emit('sent');
      });
    }
  }

  metrics(): BridgeMetrics {
    return {
      role: 'send',
      peer: `${this.opts.host}:${this.opts.port}`,
      packets: this.st.packets,
      bytes: this.st.bytes,
      lost: 0,
      lossRate: 0,
      late: 0,
      duplicates: 0,
      reordered: 0,
      jitterMs: 0,
      driftPpm: 0,
      ratePpm: 0,
      fillMs: 0,
      targetMs: 0,
      plcFrames: 0,
      underruns: 0,
    };
  }

  /** Stops reading (Ctrl-C): run() resolves with 'stopped'. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.srv?.readable.destroy();
  }

  private async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.reporter) {
      this.reporter.report(this.metrics());
      this.reporter.close();
      this.reporter = null;
    }
    await this.srv?.close();
    if (this.sock) {
      const s = this.sock;
      this.sock = null;
      if (this.inflight > 0) await new Promise((r) => this.once('sent', r));
      await new Promise<void>((r) => s.close(() => r()));
    }
    this.resampler?.destroy();
  }
}
