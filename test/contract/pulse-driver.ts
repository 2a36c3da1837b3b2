/**
 * A ClientDriver over the PulseAudio command-line clients (paplay, parecord,
 * pactl): real clients of a real PulseAudio, or of PipeWire's PulseAudio
 * server (pipewire-pulse) where PipeWire runs. Which server they reach comes
 * from the environment (PULSE_SERVER).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PcmFormat } from '../../src/format';
import { run, spawnTracked } from '../helpers/proc';
import { pulseFormat, type ClientDriver, type Device, type RecorderRun } from './backend-contract';

export function rawArgs(f: PcmFormat): string[] {
  return ['--raw', `--format=${pulseFormat(f.format)}`, `--rate=${f.rate}`, `--channels=${f.channels}`];
}

async function pactl(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  const r = await run('pactl', args, { env, timeoutMs: 10000 });
  if (r.code !== 0) throw new Error(`pactl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Application streams in `pactl list sink-inputs|source-outputs`: the
 * daemon's own (audioloop.instance) and those of modules (no client: e.g.
 * module-remap-source's stream on its master) left out.
 */
export async function clientStreamCount(env: NodeJS.ProcessEnv, kind: 'sink-inputs' | 'source-outputs'): Promise<number> {
  const out = await pactl(env, ['list', kind]);
  return out
    .split(/^(?=Sink Input #|Source Output #)/m)
    .filter((b) => /^(Sink Input|Source Output) #/.test(b))
    .filter((b) => !/audioloop\.instance = /.test(b) && !/^\s*Client: n\/a$/m.test(b)).length;
}

export function pulseToolsDriver(env: NodeJS.ProcessEnv = process.env): ClientDriver & { dispose(): void } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-driver-'));
  let seq = 0;
  return {
    async devices(): Promise<Device[]> {
      const rows = async (kind: 'sinks' | 'sources'): Promise<string[][]> =>
        (await pactl(env, ['list', 'short', kind]))
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => l.split('\t'));
      const sinks = (await rows('sinks')).map((r): Device => ({ name: r[1]!, direction: 'sink', spec: r[3]! }));
      const sources = (await rows('sources')).filter((r) => !r[1]!.endsWith('.monitor')).map((r): Device => ({ name: r[1]!, direction: 'source', spec: r[3]! }));
      return [...sinks, ...sources];
    },
    async streams() {
      return { playing: await clientStreamCount(env, 'sink-inputs'), recording: await clientStreamCount(env, 'source-outputs') };
    },
    play(node, fmt, pcm) {
      const file = path.join(tmp, `play-${seq++}.raw`);
      fs.writeFileSync(file, pcm);
      const t = spawnTracked('paplay', [...rawArgs(fmt), '-d', node, file], { env });
      return {
        app: 'paplay',
        done: t.done,
        stop: () => {
          if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGINT');
        },
      };
    },
    record(node, fmt): RecorderRun {
      const file = path.join(tmp, `rec-${seq++}.raw`);
      // a short latency: parecord otherwise holds up to 2 s in the server and loses it on exit
      const t = spawnTracked('parecord', [...rawArgs(fmt), '--latency-msec=20', '-d', node, file], { env });
      return {
        app: 'parecord',
        done: t.done,
        stop: () => {
          if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGINT');
        },
        data: () => (fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0)),
      };
    },
    dispose() {
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}
