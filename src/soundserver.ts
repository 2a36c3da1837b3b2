/**
 * The embedded sound server: a private headless PipeWire started through
 * scripts/soundserver.sh where no sound server runs.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SOUNDSERVER_SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'soundserver.sh');

export interface EmbeddedSoundServer {
  dir: string;
  /** variables a client needs to reach it */
  env: Record<string, string>;
  /** idempotent, synchronous (safe in exit handlers) */
  stop(): void;
}

/**
 * Starts the private sound server in `dir` and points this process's environment at it:
 * PipeWire (default) or a real headless PulseAudio.
 */
export function startEmbeddedSoundServer(dir: string, kind: 'pipewire' | 'pulseaudio' = 'pipewire'): Promise<EmbeddedSoundServer> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SOUNDSERVER_SCRIPT, kind === 'pulseaudio' ? 'start-pulse' : 'start', dir], { timeout: 60000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`could not start the embedded sound server: ${stderr.trim() || err.message}`));
        return;
      }
      const env: Record<string, string> = {};
      for (const line of stdout.split('\n')) {
        const m = /^export ([A-Z_]+)='(.*)'$/.exec(line.trim());
        if (m) env[m[1]!] = m[2]!;
      }
      Object.assign(process.env, env);
      let stopped = false;
      resolve({
        dir,
        env,
        stop() {
          if (stopped) return;
          stopped = true;
          try {
            execFileSync('bash', [SOUNDSERVER_SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 30000 });
          } catch {
            /* best effort */
          }
        },
      });
    });
  });
}

/** True when a PipeWire socket for this environment exists. */
export function pipewireSocketExists(env: NodeJS.ProcessEnv = process.env): boolean {
  const dir = env.PIPEWIRE_RUNTIME_DIR ?? env.XDG_RUNTIME_DIR;
  const name = env.PIPEWIRE_REMOTE ?? 'pipewire-0';
  if (name.startsWith('/')) return fs.existsSync(name);
  return !!dir && fs.existsSync(path.join(dir, name));
}
