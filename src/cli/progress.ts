/**
 * The progress line of `audioloop record` and `audioloop play` on a
 * terminal, like `arecord -V stereo`: elapsed time since the client started,
 * bytes moved, and a peak meter per channel (src/dsp/level.ts: 300 ms hold,
 * 20 dB/s fall), redrawn in place on one line of stderr:
 *
 *     rec 00:01.2  230.4 kB  L [###########---------] -6.0  R [##########----------] -8.1 dBFS
 *
 * `play` writes ahead of what is played (socket buffers and the ring hold a
 * few hundred ms, a short file entirely), so its line is paced: bytes and
 * meter follow the loop's rate from START, min(written, elapsed x rate),
 * and reach everything written once the daemon has played it out.
 *
 * Only when stderr is a terminal and not `-q` (progressFor decides); the
 * other messages go through `say()`, which clears the line first and
 * redraws it after, so they never mix.
 */
import { frameBytes, type PcmFormat } from '../format';
import { PeakMeter, SILENCE_DB } from '../dsp/level';
import { meterBar } from './top';

/** how often the line is redrawn */
const REDRAW_MS = 100;

export function formatElapsed(ms: number): string {
  const tenths = Math.floor(ms / 100);
  const s = Math.floor(tenths / 10);
  const m = Math.floor(s / 60);
  const mm = m >= 100 ? String(m) : String(m).padStart(2, '0');
  return `${mm}:${String(s % 60).padStart(2, '0')}.${tenths % 10}`;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

function channelNames(channels: number): string[] {
  if (channels === 1) return ['M'];
  if (channels === 2) return ['L', 'R'];
  return Array.from({ length: channels }, (_, i) => String(i + 1));
}

/**
 * One progress line as text (pure, for tests): `width` is the terminal's;
 * the meters shrink to fit it (down to 4 cells each, then the line is cut).
 */
export function renderProgress(label: string, elapsedMs: number, bytes: number, levelsDb: number[], width: number): string {
  const head = `${label} ${formatElapsed(elapsedMs)}  ${formatBytes(bytes).padStart(8)}`;
  const names = channelNames(levelsDb.length);
  const db = levelsDb.map((d) => (d <= SILENCE_DB ? '-inf' : d.toFixed(1)).padStart(5));
  // per channel: "  N [" + bar + "] " + db; then " dBFS"
  const fixed = head.length + names.reduce((n, name, i) => n + name.length + 6 + db[i]!.length, 0) + 5;
  const bar = Math.max(4, Math.min(20, Math.floor((width - 1 - fixed) / Math.max(1, names.length))));
  let line = head;
  names.forEach((name, i) => (line += `  ${name} ${meterBar(levelsDb[i]!, bar)} ${db[i]}`));
  line += ' dBFS';
  return line.length > width - 1 ? line.slice(0, Math.max(0, width - 1)) : line;
}

export class Progress {
  private readonly meter: PeakMeter;
  /** bytes counted and metered (shown) */
  private bytes = 0;
  private startedAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private shown = false;
  /** paced: what was written and not yet metered */
  private readonly queue: Buffer[] = [];
  private written = 0;
  private readonly frameBytes: number;
  private readonly bytesPerMs: number;

  /**
   * `paced`: count and meter at the loop's rate from START (for play), not
   * as update() is called. `now`: a millisecond clock (injectable for tests).
   */
  constructor(
    private readonly label: string,
    format: PcmFormat,
    private readonly out: NodeJS.WriteStream,
    private readonly paced = false,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.meter = new PeakMeter(format.format, format.channels, now);
    this.frameBytes = frameBytes(format);
    this.bytesPerMs = (this.frameBytes * format.rate) / 1000;
  }

  /** the client started: the clock runs from here and the line is drawn */
  start(): void {
    if (this.startedAt !== null) return;
    this.startedAt = this.now();
    this.timer = setInterval(() => this.draw(), REDRAW_MS);
    this.draw();
    this.timer.unref();
  }

  /** PCM that was read or written */
  update(chunk: Buffer): void {
    if (!this.paced) {
      this.bytes += chunk.length;
      this.meter.update(chunk);
      return;
    }
    this.queue.push(chunk);
    this.written += chunk.length;
  }

  /** paced: meters the written data up to `upTo` bytes (whole frames) */
  private advance(upTo: number): void {
    upTo -= upTo % this.frameBytes;
    while (this.bytes < upTo && this.queue.length) {
      const head = this.queue[0]!;
      const n = Math.min(head.length, upTo - this.bytes);
      this.meter.update(n === head.length ? head : head.subarray(0, n));
      if (n === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(n);
      this.bytes += n;
    }
  }

  /** a message on its own line, with the progress line cleared before and redrawn after */
  say(message: string): void {
    if (this.shown) this.out.write('\r\x1b[K');
    this.out.write(message + '\n');
    if (this.shown) this.draw();
  }

  /** stops redrawing; the last state stays on its line (paced: all that was written) */
  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.paced) this.advance(this.written);
    if (this.startedAt !== null) {
      this.draw();
      this.out.write('\n');
    }
    this.shown = false;
  }

  /** redraws the line (the timer does, every REDRAW_MS) */
  draw(): void {
    if (this.startedAt === null) return;
    const elapsed = this.now() - this.startedAt;
    if (this.paced && this.timer) this.advance(Math.min(this.written, Math.floor(elapsed * this.bytesPerMs)));
    const line = renderProgress(this.label, elapsed, this.bytes, this.meter.levelsDb(), this.out.columns || 80);
    this.out.write(`\r${line}\x1b[K`);
    this.shown = true;
  }
}

/** A Progress for stderr when it is a terminal and not quiet; otherwise null (print nothing extra). */
export function progressFor(label: string, format: PcmFormat, quiet: boolean | undefined, paced = false): Progress | null {
  if (quiet || !process.stderr.isTTY) return null;
  return new Progress(label, format, process.stderr, paced);
}
