/**
 * The real sound server for integration tests. If the environment already
 * points at a running one of the kind this run tests (scripts/test.sh starts
 * it), it is used; otherwise a private one is started with
 * scripts/soundserver.sh and stopped after the run. Under CI=true a missing
 * sound server is a failure.
 *
 * The kind: AUDIOLOOP_TEST_SOUNDSERVER=pulseaudio runs the suites that are
 * written for both (loop, CLI, faults, the backend contract) against a real
 * PulseAudio with the PulseAudio backend; anything else is PipeWire.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PipeWireBackend } from '../../src/backend/pipewire';
import { PulseAudioBackend } from '../../src/backend/pulseaudio';
import type { Backend } from '../../src/backend/types';

export type SoundServerKind = 'pipewire' | 'pulseaudio';

/** The sound server this test run is for. */
export function soundServerKind(): SoundServerKind {
  return process.env.AUDIOLOOP_TEST_SOUNDSERVER === 'pulseaudio' ? 'pulseaudio' : 'pipewire';
}

/** true on a real PulseAudio run */
export const onPulseAudio = (): boolean => soundServerKind() === 'pulseaudio';

/** A backend for this run's sound server (what `--backend auto` picks there). */
export function suiteBackend(appName: string): Backend {
  return onPulseAudio() ? new PulseAudioBackend({ appName }) : new PipeWireBackend({ appName });
}

/** "PipeWire" or "PulseAudio", for test titles */
export function soundServerTitle(): string {
  return onPulseAudio() ? 'PulseAudio' : 'PipeWire';
}

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const SOUNDSERVER_SCRIPT = path.join(ROOT, 'scripts', 'soundserver.sh');

let state: { ok: boolean; reason: string; startedDir: string | null } | null = null;

function pactlWorks(): boolean {
  try {
    const info = execFileSync('pactl', ['info'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    if (onPulseAudio()) return /^Server Name: pulseaudio$/m.test(info);
    const dir = process.env.XDG_RUNTIME_DIR;
    return !!dir && fs.existsSync(path.join(dir, 'pipewire-0'));
  } catch {
    return false;
  }
}

function applyEnv(text: string): void {
  for (const line of text.split('\n')) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(line.trim());
    if (m) process.env[m[1]!] = m[2]!;
  }
}

/** Makes sure a sound server answers; returns false (or throws under CI) if none can be had. */
export function ensureSoundServer(): boolean {
  if (state) return state.ok;
  if (pactlWorks()) {
    state = { ok: true, reason: '', startedDir: null };
    return true;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-test-rt-'));
  try {
    const out = execFileSync('bash', [SOUNDSERVER_SCRIPT, onPulseAudio() ? 'start-pulse' : 'start', dir], { encoding: 'utf8', timeout: 60000 });
    if (onPulseAudio()) {
      delete process.env.PIPEWIRE_RUNTIME_DIR;
      delete process.env.PIPEWIRE_REMOTE;
    }
    applyEnv(out);
    state = { ok: pactlWorks(), reason: 'started but pactl does not answer', startedDir: dir };
  } catch (e) {
    state = { ok: false, reason: String(e), startedDir: null };
  }
  if (!state.ok && process.env.CI === 'true') {
    throw new Error(`CI=true and no sound server could be started: ${state.reason}`);
  }
  return state.ok;
}

export function stopStartedSoundServer(): void {
  if (state?.startedDir) {
    try {
      execFileSync('bash', [SOUNDSERVER_SCRIPT, 'stop', state.startedDir], { stdio: 'ignore', timeout: 30000 });
    } catch {
      /* best effort */
    }
    fs.rmSync(state.startedDir, { recursive: true, force: true });
  }
  state = null;
}

/** For integration suites: `before(requireSoundServer)`. Skips locally, fails under CI. */
export function requireSoundServer(this: Mocha.Context): void {
  if (!ensureSoundServer()) this.skip();
}

/** For tests of PipeWire itself (pw-play, pw-dump, WirePlumber): skipped on a PulseAudio run. */
export function requirePipeWire(this: Mocha.Context): void {
  if (onPulseAudio()) this.skip();
  if (!ensureSoundServer()) this.skip();
}
