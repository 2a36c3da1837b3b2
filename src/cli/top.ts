/**
 * `audioloop top`: a live view of every loop (state, format, server, client
 * app, level meters, xruns, ring fill), redrawn from the daemon's STATUS.
 * On a terminal it takes over the screen until q or Ctrl-C; otherwise (or
 * with --once) it prints frames one after another.
 */
import { parseArgs } from 'node:util';
import { alignColumns, fetchStatus, loopCells, LOOP_HEAD } from '../control';
import type { DaemonStatus } from '../daemon';
import { defaultSocketDir } from '../protocol';
import { SILENCE_DB } from '../dsp/level';

export const TOP_HELP = `usage: audioloop top [options]

A live view of every loop: state, mode, format, server, client app and pid,
a peak level meter per loop (dBFS, falling 20 dB/s), xruns and ring fill.
Keys: q or Ctrl-C quits.

  -i, --interval MS     refresh period in milliseconds, 100-10000 (default 500)
      --once            print one frame and exit (also for scripts)
  -n, --iterations N    print N frames and exit
      --no-color        no ANSI colors (default when not a terminal)
  -s, --socket-dir DIR
  -h, --help`;

/** the meter spans this many dB below full scale */
const METER_FLOOR_DB = -60;

/** `[########--------]` for a level in dBFS; `width` cells between the brackets */
export function meterBar(db: number, width: number): string {
  const frac = Math.max(0, Math.min(1, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
  const full = Math.round(frac * width);
  return '[' + '#'.repeat(full) + '-'.repeat(width - full) + ']';
}

function fmtDb(db: number): string {
  return db <= SILENCE_DB ? '-inf' : db.toFixed(1);
}

export interface RenderOptions {
  width: number;
  color: boolean;
  now?: Date;
}

/** One frame of the view as text (pure: unit-testable). */
export function renderTop(st: DaemonStatus, o: RenderOptions): string {
  const c = (code: string, s: string): string => (o.color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const stateColor: Record<string, string> = { idle: '2', waiting: '33', running: '32', draining: '36', closing: '35' };
  const lines: string[] = [];
  const time = (o.now ?? new Date()).toISOString().slice(11, 19);
  lines.push(
    `audioloop top - ${time}  daemon pid ${st.pid}  sound server: ${st.soundServer.backend} ` +
      (st.soundServer.connected ? c('32', 'connected') : c('31', 'NOT CONNECTED')) +
      `  loops: ${st.loops.length}, running: ${st.loops.filter((l) => l.state === 'running').length}`,
  );
  lines.push('');
  const rows: string[][] = [[...LOOP_HEAD, 'LEVEL dBFS', 'XRUNS', 'FILL']];
  for (const l of st.loops) {
    const levels = l.levels ?? null;
    const peak = levels && levels.length ? Math.max(...levels) : SILENCE_DB;
    const cells = loopCells(l);
    if (l.retiring) cells[0] += '*';
    rows.push([
      ...cells,
      levels ? `${meterBar(peak, 16)} ${levels.map(fmtDb).join('/')}` : '-',
      String(l.xruns),
      l.size ? `${Math.round((100 * l.fill) / l.size)}%` : '-',
    ]);
  }
  const fit = (s: string): string => (s.length > o.width ? s.slice(0, o.width) : s);
  alignColumns(rows).forEach((text, r) => {
    const state = rows[r]![1]!;
    lines.push(r > 0 && o.color ? fit(text).replace(state, c(stateColor[state] ?? '0', state)) : fit(text));
  });
  if (st.loops.some((l) => l.retiring)) lines.push('', '* removed from the config; goes when its server closes');
  return lines.join('\n') + '\n';
}

class TopUsage extends Error {
  readonly code = 'EUSAGE';
}

/** Exit codes as the main CLI: 0 ok, 2 usage, 3 no daemon. */
export async function cmdTop(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        interval: { type: 'string', short: 'i' },
        once: { type: 'boolean' },
        iterations: { type: 'string', short: 'n' },
        'no-color': { type: 'boolean' },
        'socket-dir': { type: 'string', short: 's' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (e) {
    throw new TopUsage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(TOP_HELP + '\n');
    return 0;
  }
  const interval = values.interval === undefined ? 500 : Number(values.interval);
  if (!Number.isInteger(interval) || interval < 100 || interval > 10000) throw new TopUsage(`--interval must be an integer 100-10000, got "${values.interval}"`);
  let frames = values.once ? 1 : values.iterations === undefined ? Infinity : Number(values.iterations);
  if (!(frames === Infinity || (Number.isInteger(frames) && frames >= 1))) throw new TopUsage(`--iterations must be a positive integer, got "${values.iterations}"`);
  const dir = values['socket-dir'] ?? defaultSocketDir();
  const tty = !!process.stdout.isTTY && frames === Infinity;
  const color = tty && !values['no-color'] && !process.env.NO_COLOR;

  let quit = false;
  let wake: (() => void) | null = null;
  const stop = (): void => {
    quit = true;
    wake?.();
  };
  const onKey = (d: Buffer): void => {
    if (d.includes(0x71 /* q */) || d.includes(0x03 /* Ctrl-C */)) stop();
  };
  if (tty) {
    process.stdout.write('\x1b[?1049h\x1b[?25l'); // alternate screen, hide cursor
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.on('data', onKey);
      process.stdin.resume();
    }
  }
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    while (!quit && frames-- > 0) {
      let st: DaemonStatus;
      try {
        st = await fetchStatus(dir);
      } catch (e) {
        if (tty) process.stdout.write('\x1b[?1049l\x1b[?25h');
        process.stderr.write(`audioloop top: no daemon answers in ${dir} (${(e as Error).message})\n`);
        return 3;
      }
      const frame = renderTop(st, { width: process.stdout.columns ?? 200, color });
      process.stdout.write(tty ? `\x1b[H\x1b[2J${frame}` : frame + (frames > 0 ? '\n' : ''));
      if (frames > 0 && !quit) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, interval);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = null;
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (tty) {
      process.stdout.write('\x1b[?1049l\x1b[?25h');
      if (process.stdin.isTTY) {
        process.stdin.setRawMode(false);
        process.stdin.off('data', onKey);
        process.stdin.pause();
      }
    }
  }
  return 0;
}
