/**
 * The in-process daemon fixture that integration tests share: a fresh
 * temporary directory and socket directory per test, the daemon's debug log
 * kept (and printed when a test fails), LoopServers closed and the daemon
 * stopped after each test. Call inside a describe(); it registers the
 * beforeEach/afterEach hooks, and its own run before the ones the test file
 * adds after it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Backend } from '../../src/backend/types';
import type { LoopServer } from '../../src/client';
import { DEFAULT_CONFIG, type AudioloopConfig } from '../../src/config';
import { Daemon } from '../../src/daemon';
import { createLogger } from '../../src/log';

export interface DaemonFixtureOptions {
  /** mkdtemp prefix, e.g. 'audioloop-clock-' */
  prefix: string;
  /** the socket directory's name inside the temporary directory */
  socketName: string;
  /** only the last N log lines are printed for a failed test (default: all) */
  logTail?: number;
  /** after each test, once the daemon has stopped (e.g. wait for the sound server to be as it was) */
  afterStop?: () => Promise<void>;
}

export interface DaemonFixture {
  /** this test's temporary directory */
  readonly tmp: string;
  /** the daemon's socket directory */
  readonly dir: string;
  /** servers to close after the test */
  readonly servers: LoopServer[];
  readonly logLines: string[];
  readonly daemon: Daemon | null;
  /** starts the daemon on `dir` with DEFAULT_CONFIG, logLevel debug and `config` on top */
  start(config: Partial<AudioloopConfig>, connect: () => Backend): Promise<Daemon>;
}

export function useDaemonFixture(opts: DaemonFixtureOptions): DaemonFixture {
  let tmp = '';
  let dir = '';
  let daemon: Daemon | null = null;
  const logLines: string[] = [];
  const servers: LoopServer[] = [];
  beforeEach(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), opts.prefix));
    dir = path.join(tmp, opts.socketName);
    logLines.length = 0;
  });
  afterEach(async function () {
    for (const s of servers.splice(0)) await s.close().catch(() => undefined);
    if (daemon) await daemon.stop();
    daemon = null;
    if (this.currentTest?.state === 'failed' && logLines.length) {
      const lines = opts.logTail ? logLines.slice(-opts.logTail) : logLines;
      process.stderr.write(`--- daemon log of "${this.currentTest.title}":\n${lines.join('\n')}\n`);
    }
    if (opts.afterStop) await opts.afterStop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  return {
    get tmp() {
      return tmp;
    },
    get dir() {
      return dir;
    },
    servers,
    logLines,
    get daemon() {
      return daemon;
    },
    async start(config, connect) {
      daemon = new Daemon({
        config: { ...DEFAULT_CONFIG, logLevel: 'debug', ...config },
        socketDir: dir,
        connect,
        log: createLogger('debug', 'audioloop', (l) => logLines.push(l)),
      });
      await daemon.start();
      return daemon;
    },
  };
}
