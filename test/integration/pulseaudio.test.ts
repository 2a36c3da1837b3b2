/**
 * The loops on a REAL PulseAudio 16 (Debian `pulseaudio`), not PipeWire's
 * pulse layer: this suite starts its own private headless PulseAudio with
 * scripts/soundserver.sh start-pulse (beside the PipeWire the rest of the
 * suite uses), runs the daemon with --backend pulseaudio against it, and
 * uses real paplay/parec clients. Every child gets the PulseAudio
 * environment explicitly; this process's environment is not changed.
 *
 * What every backend must do (format, direction, START gating, bit-exact
 * data, ECONNRESET, EBUSY, client streams killed not moved, xruns, bounded
 * memory) is the backend contract, run on a real PulseAudio by
 * backend-contract.test.ts in scripts/test.sh's PulseAudio pass; this file
 * keeps the CLI and the PulseAudio specifics (modules, descriptions,
 * monitor or not, stale modules, the backend choice).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchStatus } from '../../src/control';
import { frameBytes, type PcmFormat } from '../../src/format';
import { controlSocketPath } from '../../src/protocol';
import { readWavFile, wavHeader } from '../../src/wav';
import { counterPcm } from '../helpers/pcm';
import { run, spawnTracked, waitFor, type Tracked } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const SOUNDSERVER = path.join(ROOT, 'scripts', 'soundserver.sh');
const S16: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };

function hasPulseAudio(): boolean {
  try {
    execFileSync('bash', ['-c', 'command -v pulseaudio && command -v paplay && command -v parec'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Frequency of a mono-or-interleaved s16 tone by counting rising zero crossings of channel 0. */
function toneHz(pcm: Buffer, fmt: PcmFormat): number {
  const fb = frameBytes(fmt);
  let crossings = 0;
  let prev = 0;
  let first = -1;
  let last = -1;
  for (let i = 0; i + fb <= pcm.length; i += fb) {
    const v = pcm.readInt16LE(i);
    if (prev < 0 && v >= 0) {
      if (first < 0) first = i / fb;
      else crossings++;
      last = i / fb;
    }
    prev = v;
  }
  return last > first ? (crossings * fmt.rate) / (last - first) : 0;
}

function sine(fmt: PcmFormat, hz: number, frames: number): Buffer {
  const buf = Buffer.alloc(frames * frameBytes(fmt));
  for (let i = 0; i < frames; i++) {
    const v = Math.round(16000 * Math.sin((2 * Math.PI * hz * i) / fmt.rate));
    for (let c = 0; c < fmt.channels; c++) buf.writeInt16LE(v, (i * fmt.channels + c) * 2);
  }
  return buf;
}

/** Drops all-silent frames (counter frames are never silent). */
function withoutSilence(buf: Buffer, fmt: PcmFormat): Buffer {
  const fb = frameBytes(fmt);
  const zero = Buffer.alloc(fb);
  const out: Buffer[] = [];
  for (let i = 0; i + fb <= buf.length; i += fb) if (!buf.subarray(i, i + fb).equals(zero)) out.push(buf.subarray(i, i + fb));
  return Buffer.concat(out);
}

describe('PulseAudio backend (a real private PulseAudio)', function () {
  this.timeout(30000);
  let rt = '';
  let env: NodeJS.ProcessEnv = {};
  let tmp = '';
  let sockDir = '';
  let daemon: Tracked | null = null;

  const pactl = (...args: string[]): string => execFileSync('pactl', args, { env, encoding: 'utf8', timeout: 5000 });
  const audioloopModules = (): string[] => pactl('list', 'short', 'modules').split('\n').filter((l) => l.includes('audioloop.pid='));
  const shortList = (what: string): string[][] =>
    pactl('list', 'short', what)
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => l.split('\t'));

  before(function () {
    if (!hasPulseAudio()) {
      if (process.env.CI === 'true') throw new Error('CI=true and pulseaudio/paplay/parec are missing (scripts/setup.sh installs them)');
      this.skip();
    }
    rt = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-pa-rt-'));
    const out = execFileSync('bash', [SOUNDSERVER, 'start-pulse', rt], { encoding: 'utf8', timeout: 60000 });
    env = { ...process.env };
    delete env.PIPEWIRE_RUNTIME_DIR;
    delete env.PIPEWIRE_REMOTE;
    for (const line of out.split('\n')) {
      const m = /^export ([A-Z_]+)='(.*)'$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!;
    }
    assert.match(pactl('info'), /Server Name: pulseaudio\n/);
  });

  after(() => {
    if (rt) {
      execFileSync('bash', [SOUNDSERVER, 'stop', rt], { stdio: 'ignore', timeout: 30000 });
      fs.rmSync(rt, { recursive: true, force: true });
    }
  });

  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-pa-'));
    sockDir = path.join(tmp, 'sock');
    daemon = spawnTracked(process.execPath, [CLI, 'daemon', '--backend', 'pulseaudio', '--sound-server', 'system', '-s', sockDir], { env });
    await waitFor(() => fs.existsSync(controlSocketPath(sockDir)), 10000, 'the daemon to listen');
  });

  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('status and the log name the backend; no node while no server holds the loop', async () => {
    const st = await fetchStatus(sockDir);
    assert.equal(st.soundServer.backend, 'pulseaudio');
    assert.equal(st.soundServer.connected, true);
    assert.match(daemon!.stderr(), /sound-server backend: pulseaudio/);
    assert.deepEqual(shortList('sinks').filter((s) => s[1] === 'audioloop0'), []);
    assert.deepEqual(shortList('sources').filter((s) => s[1] === 'audioloop0'), []);
    assert.deepEqual(audioloopModules(), []);
  });

  it('paplay -> read loop -> server: every frame unchanged, client app/pid in status, node and modules gone after', async () => {
    const frames = 48000;
    const pcm = counterPcm('s16le', 2, frames);
    const wav = path.join(tmp, 'in.wav');
    fs.writeFileSync(wav, Buffer.concat([wavHeader(S16, pcm.length), pcm]));
    const outWav = path.join(tmp, 'out.wav');
    const rec = spawnTracked(process.execPath, [CLI, 'record', '0', outWav, '-s', sockDir, '-f', 's16le', '-r', '48000', '-c', '2'], { env });
    const sink = await waitFor(() => shortList('sinks').find((s) => s[1] === 'audioloop0'), 5000, 'sink audioloop0');
    assert.equal(sink[3], 's16le 2ch 48000Hz');
    assert.match(pactl('list', 'sinks'), /Name: audioloop0\n\s+Description: Audioloop 0 \(/);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=200', wav], { env });
    const st = await waitFor(async () => {
      const s = await fetchStatus(sockDir);
      return s.loops[0]?.clients.length ? s : null;
    }, 5000, 'a client in status');
    assert.equal(st.loops[0]!.clients[0]!.appName, 'paplay');
    assert.equal(st.loops[0]!.clients[0]!.pid, play.pid);
    assert.equal((await play.done).code, 0);
    const r = await rec.done;
    assert.match(r.stderr, /ECONNRESET/);
    const got = withoutSilence((await readWavFile(outWav)).data, S16);
    assert.equal(got.length, pcm.length, 'every frame, nothing more');
    assert.ok(got.equals(pcm), 'bit-exact');
    await waitFor(() => !shortList('sinks').some((s) => s[1] === 'audioloop0'), 5000, 'the sink to go');
    assert.deepEqual(audioloopModules(), []);
  });

  it('server -> write loop (an ordinary source, not a monitor) -> parec: the tone unchanged', async () => {
    const frames = 48000;
    const tone = sine(S16, 1000, frames);
    const wav = path.join(tmp, 'tone.wav');
    fs.writeFileSync(wav, Buffer.concat([wavHeader(S16, tone.length), tone]));
    const player = spawnTracked(process.execPath, [CLI, 'play', '0', wav, '-s', sockDir], { env });
    const src = await waitFor(() => shortList('sources').find((s) => s[1] === 'audioloop0'), 5000, 'source audioloop0');
    assert.equal(src[3], 's16le 2ch 48000Hz');
    const info = pactl('list', 'sources').split('\n\n').find((b) => /Name: audioloop0\n/.test(b))!;
    assert.match(info, /Monitor of Sink: n\/a/);
    assert.match(info, /Description: Audioloop 0 \(/);
    const raw = path.join(tmp, 'rec.raw');
    const fd = fs.openSync(raw, 'w');
    const rec = spawnTracked('parec', ['-d', 'audioloop0', '--latency-msec=20', '--format=s16le', '--rate=48000', '--channels=2', '--raw'], {
      env,
      stdio: ['ignore', fd, 'pipe'],
    });
    const p = await player.done;
    const r = await rec.done;
    fs.closeSync(fd);
    assert.equal(p.code, 0, p.stderr);
    assert.notEqual(r.code, 0, 'parec was ended by the server close, not left recording');
    const got = fs.readFileSync(raw);
    const at = got.indexOf(tone.subarray(0, 4000));
    assert.ok(at >= 0, 'the tone starts unchanged');
    const body = got.subarray(at, at + tone.length);
    const same = body.length === tone.length && body.equals(tone);
    // what arrived is the tone, unchanged, and all of it
    assert.equal(body.length, tone.length, `bytes of the tone recorded (${body.length} of ${tone.length})`);
    assert.ok(same, 'bit-exact');
    assert.ok(Math.abs(toneHz(body, S16) - 1000) < 2, `1 kHz, got ${toneHz(body, S16)}`);
    await waitFor(() => !shortList('sources').some((s) => s[1] === 'audioloop0'), 5000, 'the source to go');
    assert.deepEqual(audioloopModules(), []);
  });

  it('a SIGKILLed daemon leaves modules; the next daemon removes them at start', async () => {
    const rec = spawnTracked(process.execPath, [CLI, 'record', '0', path.join(tmp, 'o.wav'), '-s', sockDir, '-f', 's16le', '-r', '48000', '-c', '2'], { env });
    await waitFor(() => shortList('sinks').find((s) => s[1] === 'audioloop0'), 5000, 'sink audioloop0');
    daemon!.child.kill('SIGKILL');
    await daemon!.done;
    await rec.done;
    assert.equal(audioloopModules().length, 1, 'the dead daemon left its null sink');
    const sock2 = path.join(tmp, 'sock2');
    const d2 = spawnTracked(process.execPath, [CLI, 'daemon', '--backend', 'pulseaudio', '--sound-server', 'system', '-s', sock2], { env });
    await waitFor(() => fs.existsSync(controlSocketPath(sock2)), 10000, 'the second daemon to listen');
    assert.deepEqual(audioloopModules(), []);
    assert.deepEqual(shortList('sinks').map((s) => s[1]), ['speakers']);
    d2.child.kill('SIGTERM');
    await d2.done;
  });

  it('run(): the CLI can name the backend in the config file', async () => {
    const conf = path.join(tmp, 'a.conf');
    fs.writeFileSync(conf, 'backend = pulseaudio\n');
    const sock3 = path.join(tmp, 'sock3');
    const d3 = spawnTracked(process.execPath, [CLI, 'daemon', '-c', conf, '--sound-server', 'system', '-s', sock3], { env });
    await waitFor(() => fs.existsSync(controlSocketPath(sock3)), 10000, 'the daemon to listen');
    const st = await run(process.execPath, [CLI, 'status', '-s', sock3], { env });
    assert.match(st.stdout, /sound server: pulseaudio \(connected\)/);
    d3.child.kill('SIGTERM');
    await d3.done;
  });
});
