/**
 * The daemon's control socket, client side: `STATUS` -> one JSON line.
 */
import * as net from 'node:net';
import type { DaemonStatus } from './daemon';
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
