/**
 * The backend contract (test/contract/backend-contract.ts) on the memory
 * backend, with simulated clients: a MemoryClient that plays a buffer and
 * leaves when it has played it all (like paplay), or records until stopped
 * (like parecord). A client whose node vanishes under it is "orphaned": a
 * session manager would move it to another device, so it counts as a
 * stream that lives on elsewhere.
 */
import { MemoryBackend, MemoryClock, type MemoryClient } from '../../src/backend/memory';
import type { PcmFormat } from '../../src/format';
import { backendContract, pulseSpec, type ClientEnd, type ClientRun, type ContractTarget, type RecorderRun } from '../contract/backend-contract';

let current: MemoryBackend | null = null;
const live = new Set<{ kind: 'play' | 'record'; client: MemoryClient | null; finished: boolean }>();

function simulated(kind: 'play' | 'record', node: string, fmt: PcmFormat, pcm: Buffer | null): RecorderRun {
  const app = kind === 'play' ? 'memplay' : 'memrec';
  const ep = current?.endpoint(node);
  let resolve!: (e: ClientEnd) => void;
  const done = new Promise<ClientEnd>((r) => (resolve = r));
  const entry = { kind, client: null as MemoryClient | null, finished: false };
  const finish = (code: number, stderr = ''): void => {
    if (entry.finished) return;
    entry.finished = true;
    clearInterval(timer);
    live.delete(entry);
    resolve({ code, signal: null, stderr });
  };
  let timer: NodeJS.Timeout | undefined;
  const wrong = ep && (ep.options.direction === 'sink') !== (kind === 'play');
  if (!ep || wrong || ep.options.rate !== fmt.rate || ep.options.channels !== fmt.channels) {
    queueMicrotask(() => finish(1, `Stream error: No such entity (${node})`));
    return { app, done, stop: () => undefined, data: () => Buffer.alloc(0) };
  }
  const c = ep.connectClient({ appName: app, name: `${app} stream`, pid: process.pid, format: fmt.format });
  entry.client = c;
  live.add(entry);
  c.on('ended', () => finish(1, 'Stream error: Connection terminated'));
  // orphaned: the node went under it; a session manager moves it on, so it keeps "playing" elsewhere
  c.start();
  if (pcm) c.play(pcm);
  let drained = 0;
  timer = setInterval(() => {
    // a player leaves once it has played everything (a few cycles after its queue empties)
    if (kind === 'play' && c.state === 'running' && c.pending === 0 && ++drained > 2) {
      c.disconnect();
      finish(0);
    }
  }, 5);
  return {
    app,
    done,
    stop: () => {
      if (entry.finished) return;
      if (!c.gone) c.disconnect();
      finish(0);
    },
    data: () => c.recorded(),
  };
}

const target: ContractTarget = {
  connect: () => {
    // 5 ms cycles of 240 frames: at 48 kHz the memory graph runs about in real time (close() halts it)
    current = new MemoryBackend({ clock: new MemoryClock(240) });
    current.clock.run(5);
    return current;
  },
  driver: {
    async devices() {
      return (current?.endpoints() ?? []).map((ep) => ({ name: ep.options.name, direction: ep.options.direction, spec: pulseSpec(ep.options) }));
    },
    async streams() {
      let playing = 0;
      let recording = 0;
      for (const e of live) {
        if (!e.client || e.client.state === 'ended') continue;
        if (e.kind === 'play') playing++;
        else recording++;
      }
      return { playing, recording };
    },
    play: (node, fmt, pcm): ClientRun => simulated('play', node, fmt, pcm),
    record: (node, fmt): RecorderRun => simulated('record', node, fmt, null),
  },
};

backendContract({
  name: 'memory (simulated clients)',
  prepare() {
    return target;
  },
  finish() {
    current?.close();
    for (const e of [...live]) e.client?.disconnect();
    live.clear();
  },
});
