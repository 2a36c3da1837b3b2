/**
 * The daemon's control socket, client side: `STATUS` -> one JSON line.
 */
import * as net from 'node:net';
import type { DaemonStatus } from './daemon';
import { describeFormat } from './format';
import { controlSocketPath } from './protocol';

/** Asks the daemon serving `socketDir` for its status; rejects (ENOENT/ECONNREFUSED/ETIMEDOUT) when none answers. */
export async function fetchStatus(socketDir: string, timeoutMs = 5000): Promise<DaemonStatus> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(controlSocketPath(socketDir));
    sock.setTimeout(timeoutMs, () => {
      sock.destroy();
      reject(Object.assign(new Error(`the daemon at ${socketDir} did not answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    });
    let buf = '';
    sock.on('connect', () => sock.write('STATUS\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        sock.destroy();
        try {
          resolve(JSON.parse(buf.slice(0, nl)) as DaemonStatus);
        } catch (e) {
          reject(e);
        }
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
