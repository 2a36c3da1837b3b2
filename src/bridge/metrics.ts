/**
 * The bridge reports its metrics to the daemon, which shows them in
 * `audioloop status` beside the loop they belong to. One line per report on
 * the daemon's control socket, over one connection kept open while the
 * bridge runs:
 *
 *   METRICS instance=N {"role":"send",...}\n
 *
 * The daemon keeps the last report per connection and forgets it when the
 * connection closes (the bridge exits) or the loop goes idle. Reporting is
 * best effort: a daemon that is gone or does not know METRICS changes
 * nothing for the audio.
 */
import * as net from 'node:net';
import { MAX_LINE, controlSocketPath } from '../protocol';

export interface BridgeMetrics {
  role: 'send' | 'receive';
  /** the RTP peer: destination (send) or the last source seen (receive) */
  peer: string;
  packets: number;
  bytes: number;
  /** receive: sequence numbers concealed; send: always 0 */
  lost: number;
  /** lost / (received + lost), 0-1 */
  lossRate: number;
  late: number;
  duplicates: number;
  reordered: number;
  /** RFC 3550 interarrival jitter, ms */
  jitterMs: number;
  /** receive: the clock difference sender - us, as the drift controller estimates it (its integral term), ppm */
  driftPpm: number;
  /** receive: the rate correction applied now (proportional + integral), ppm */
  ratePpm: number;
  /** jitter-buffer fill and target, ms */
  fillMs: number;
  targetMs: number;
  /** frames concealed by Opus PLC */
  plcFrames: number;
  underruns: number;
}

export function formatMetricsLine(instance: number, m: BridgeMetrics): string {
  const round = (v: number): number => Math.round(v * 1000) / 1000;
  const compact = Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v === 'number' ? round(v) : v]));
  const line = `METRICS instance=${instance} ${JSON.stringify(compact)}\n`;
  if (Buffer.byteLength(line) > MAX_LINE) throw new RangeError('metrics line longer than the protocol limit');
  return line;
}

/** Parses `METRICS instance=N {json}` (without the newline); null when it is not such a line. */
export function parseMetricsLine(line: string): { instance: number; metrics: Record<string, unknown> } | null {
  const m = /^METRICS instance=(\d{1,2}) (\{.*\})$/.exec(line.trim());
  if (!m) return null;
  try {
    const metrics = JSON.parse(m[2]!) as unknown;
    if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) return null;
    return { instance: Number(m[1]), metrics: metrics as Record<string, unknown> };
  } catch {
    return null;
  }
}

/** One control connection, reconnecting lazily; never throws. */
export class MetricsReporter {
  private sock: net.Socket | null = null;
  private closed = false;

  constructor(private readonly socketDir: string, private readonly instance: number) {}

  report(m: BridgeMetrics): void {
    if (this.closed) return;
    let line: string;
    try {
      line = formatMetricsLine(this.instance, m);
    } catch {
      return;
    }
    if (!this.sock || this.sock.destroyed) {
      const s = net.connect(controlSocketPath(this.socketDir));
      s.on('error', () => undefined);
      s.on('data', () => undefined); // replies (or ERR from an older daemon) are ignored
      s.on('close', () => {
        if (this.sock === s) this.sock = null;
      });
      this.sock = s;
    }
    this.sock.write(line);
  }

  close(): void {
    this.closed = true;
    this.sock?.end();
    this.sock = null;
  }
}

/** One line for `audioloop status` (text output). */
export function describeMetrics(node: string, m: Record<string, unknown>): string {
  const n = (k: string, digits = 0): string => (typeof m[k] === 'number' ? (m[k] as number).toFixed(digits) : '?');
  if (m.role === 'send') return `${node}: bridge send to ${String(m.peer)}: ${n('packets')} packets, ${n('bytes')} bytes`;
  return (
    `${node}: bridge receive from ${String(m.peer) || '-'}: ${n('packets')} packets, lost ${n('lost')} (${(Number(m.lossRate) * 100).toFixed(1)}%), ` +
    `late ${n('late')}, dup ${n('duplicates')}, jitter ${n('jitterMs', 1)} ms, drift ${n('driftPpm')} ppm (rate ${n('ratePpm')}), ` +
    `fill ${n('fillMs')}/${n('targetMs')} ms, concealed ${n('plcFrames')}, underruns ${n('underruns')}`
  );
}
