/**
 * The daemon's control socket, client side: `STATUS` -> one JSON line.
 */
import * as net from 'node:net';
import type { DaemonStatus } from './daemon';
import { describeFormat } from './format';
import { controlSocketPath, LineReader } from './protocol';
import { makeError } from './errors';

/** the longest STATUS reply read */
const STATUS_MAX = 1 << 24;

/** Asks the daemon serving `socketDir` for its status; rejects (ENOENT/ECONNREFUSED/ETIMEDOUT) when none answers. */
export async function fetchStatus(socketDir: string, timeoutMs = 5000): Promise<DaemonStatus> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(controlSocketPath(socketDir));
    sock.setTimeout(timeoutMs, () => {
      sock.destroy();
      reject(makeError('ETIMEDOUT', 'STATUS', `the daemon at ${socketDir} did not answer within ${timeoutMs} ms`));
    });
    // the one line reader of the protocol (a status of 16 loops is a long line)
    const reader = new LineReader(STATUS_MAX);
    sock.on('connect', () => sock.write('STATUS\n'));
    sock.on('data', (d: Buffer) => {
      try {
        reader.feed(d);
        const line = reader.take();
        if (line === null) return;
        sock.destroy();
        resolve(JSON.parse(line) as DaemonStatus);
      } catch (e) {
        sock.destroy();
        reject(e);
      }
    });
    sock.on('error', reject);
  });
}

/** `paplay (pid 1234)`, `paplay`, or `?`: how status and top name a process */
export function who(app: string | null | undefined, pid: number | null | undefined): string {
  return `${app ?? '?'}${pid ? ` (pid ${pid})` : ''}`;
}

/** The columns `status` and `top` both start a loop's row with. */
export const LOOP_HEAD: readonly string[] = ['LOOP', 'STATE', 'MODE', 'FORMAT', 'SERVER', 'CLIENTS'];

/** A loop's cells under LOOP_HEAD. */
export function loopCells(l: DaemonStatus['loops'][number]): string[] {
  return [
    l.node,
    l.state,
    l.mode ?? '-',
    l.format ? describeFormat(l.format) + (l.graph?.resampled ? ` (resampled: graph at ${l.graph.rate}Hz)` : '') : '-',
    l.server ? who(l.server.app, l.server.pid) : '-',
    l.clients.length ? l.clients.map((c) => who(c.appName ?? c.name, c.pid)).join(', ') : '-',
  ];
}

/** Rows as left-aligned columns two spaces apart, trailing blanks trimmed. */
export function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}
