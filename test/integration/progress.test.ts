/**
 * The progress line of `audioloop record` / `play`: on a terminal (a real
 * pseudo-terminal from util-linux `script`) it shows elapsed time, bytes and
 * a meter per channel; piped, or with -q, nothing but the usual messages.
 * Real daemon, real PipeWire, paplay/parecord as the clients.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchStatus } from '../../src/control';
import { fromFloat32 } from '../../src/dsp/convert';
import { parseWavHeader, wavHeader } from '../../src/wav';
import { formatBytes } from '../../src/cli/progress';
import { requireSoundServer } from '../helpers/soundserver';
import { spawnTracked, waitFor, type Finished, type Tracked } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** A stereo s16 sine, left at amplitude 0.5 (-6 dBFS), right at 0.25 (-12 dBFS). */
function stereoSineWav(file: string, seconds: number): void {
  const frames = Math.round(48000 * seconds);
  const f = new Float32Array(frames * 2);
  for (let i = 0; i < frames; i++) {
    const s = Math.sin((2 * Math.PI * 440 * i) / 48000);
    f[2 * i] = 0.5 * s;
    f[2 * i + 1] = 0.25 * s;
  }
  const pcm = fromFloat32(f, 's16le');
  fs.writeFileSync(file, Buffer.concat([wavHeader({ format: 's16le', rate: 48000, channels: 2 }, pcm.length), pcm]));
}

const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs the CLI under a pseudo-terminal: stdin, stdout and stderr are the pty; script's stdout is what it showed. */
function underPty(args: string[]): Tracked {
  return spawnTracked('script', ['-qfec', [process.execPath, CLI, ...args].map(sh).join(' '), '/dev/null']);
}

interface Shown {
  line: string;
  elapsed: number;
  bytes: string;
  levels: number[];
}

/** The progress lines in what the terminal got: each redraw starts with \r and ends with erase-to-end-of-line. */
function progressLines(out: string, label: string): Shown[] {
  const re = new RegExp(`^${label} (\\d\\d):(\\d\\d\\.\\d)  +(\\d+(?:\\.\\d)? [kMG]?B)  L \\[[#-]+\\] +(-?[\\d.]+|-inf)  R \\[[#-]+\\] +(-?[\\d.]+|-inf) dBFS$`);
  const shown: Shown[] = [];
  for (const raw of out.split(/[\r\n]/)) {
    const line = raw.replace(/\x1b\[K/g, '');
    const m = re.exec(line);
    if (!m) continue;
    const db = (s: string): number => (s === '-inf' ? -Infinity : Number(s));
    shown.push({ line, elapsed: Number(m[1]) * 60 + Number(m[2]), bytes: m[3]!, levels: [db(m[4]!), db(m[5]!)] });
  }
  return shown;
}

describe('record/play progress line on a terminal (real daemon, real PipeWire)', function () {
  this.timeout(60000);
  let tmp: string;
  let sock: string;
  let tone: string;

  before(requireSoundServer);
  beforeEach(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-progress-'));
    sock = path.join(tmp, 'sock');
    tone = path.join(tmp, 'tone.wav');
    stereoSineWav(tone, 1.5);
    spawnTracked(process.execPath, [CLI, 'daemon', '-s', sock, '--sound-server', 'system', '-c', '/dev/null']);
    await waitFor(() => fetchStatus(sock).catch(() => null), 15000, 'the daemon');
  });
  afterEach(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function finished(t: Tracked, what: string): Promise<Finished> {
    const r = await Promise.race([t.done, new Promise<null>((res) => setTimeout(() => res(null), 30000))]);
    assert.ok(r, `${what} did not finish`);
    return r;
  }

  /** record 0 while paplay plays the tone; `out` is what the recorder printed (pty or stderr) */
  async function recordTone(rec: Tracked, output: () => string): Promise<{ r: Finished; dataBytes: number }> {
    await waitFor(() => {
      if (rec.child.exitCode !== null) throw new Error(`record exited: ${output()}`);
      return fetchStatus(sock).then((st) => st.loops[0]!.state === 'waiting');
    }, 15000, 'record to wait for a client');
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=200', tone]);
    assert.equal((await finished(play, 'paplay')).code, 0);
    const r = await finished(rec, 'record');
    assert.equal(r.code, 0, output());
    const wav = fs.readFileSync(path.join(tmp, 'got.wav'));
    return { r, dataBytes: parseWavHeader(wav).dataBytes! };
  }

  it('record on a TTY: one updating line with elapsed time, bytes and an L/R meter at the played levels', async function () {
    const rec = underPty(['record', '0', path.join(tmp, 'got.wav'), '-s', sock]);
    const { dataBytes } = await recordTone(rec, () => rec.stdout());
    const out = rec.stdout();
    const shown = progressLines(out, 'rec');
    assert.ok(shown.length >= 5, `redrawn several times, got ${shown.length}: ${JSON.stringify(out)}`);
    // in place: every redraw begins with a carriage return, not a new line
    assert.ok(out.includes('\r' + shown[1]!.line), 'redraws with \\r');
    // elapsed time runs; the last line has every byte of the file
    assert.ok(shown[shown.length - 1]!.elapsed >= 1.2, `elapsed ${shown[shown.length - 1]!.elapsed}`);
    assert.ok(shown.every((s, i) => i === 0 || s.elapsed >= shown[i - 1]!.elapsed), 'elapsed never goes back');
    assert.equal(shown[shown.length - 1]!.bytes, formatBytes(dataBytes));
    // the meter: the loudest shown level per channel is the played one (-6 / -12 dBFS)
    const peak = [0, 1].map((c) => Math.max(...shown.map((s) => s.levels[c]!)));
    assert.ok(Math.abs(peak[0]! - -6.0) <= 0.5, `left peak ${peak[0]}`);
    assert.ok(Math.abs(peak[1]! - -12.0) <= 0.5, `right peak ${peak[1]}`);
    // the usual messages are still there, each on its own line
    assert.match(out, /\r\n?client paplay \(pid \d+\) started\r?\n/);
    assert.match(out, /client went away \(ECONNRESET\)/);
  });

  it('record piped (stderr not a TTY): no progress line, no control characters', async function () {
    const rec = spawnTracked(process.execPath, [CLI, 'record', '0', path.join(tmp, 'got.wav'), '-s', sock]);
    const { r } = await recordTone(rec, () => rec.stderr());
    assert.deepEqual(progressLines(r.stderr, 'rec'), []);
    assert.ok(!/[\r\x1b]/.test(r.stderr), JSON.stringify(r.stderr));
    assert.ok(!r.stderr.includes('dBFS'), r.stderr);
    assert.match(r.stderr, /client went away \(ECONNRESET\)/);
  });

  it('record -q on a TTY prints nothing at all', async function () {
    const rec = underPty(['record', '0', path.join(tmp, 'got.wav'), '-s', sock, '-q']);
    const { dataBytes } = await recordTone(rec, () => rec.stdout());
    assert.ok(dataBytes >= 1.4 * 48000 * 4, `recorded ${dataBytes} B`);
    assert.equal(rec.stdout(), '');
  });

  it('play on a TTY shows the line for what it plays; parecord gets it', async function () {
    const play = underPty(['play', '0', tone, '-s', sock]);
    await waitFor(() => fetchStatus(sock).then((st) => st.loops[0]!.state === 'waiting'), 15000, 'play to wait for a client');
    const heard = path.join(tmp, 'heard.wav');
    const rec = spawnTracked('parecord', ['-d', 'audioloop0', '--rate=48000', '--channels=2', '--latency-msec=50', heard]);
    const p = await finished(play, 'play');
    assert.equal(p.code, 0, play.stdout());
    await finished(rec, 'parecord');
    const shown = progressLines(play.stdout(), 'play');
    assert.ok(shown.length >= 3, JSON.stringify(play.stdout()));
    const dataBytes = parseWavHeader(fs.readFileSync(tone)).dataBytes!;
    assert.equal(shown[shown.length - 1]!.bytes, formatBytes(dataBytes));
    const peak = [0, 1].map((c) => Math.max(...shown.map((s) => s.levels[c]!)));
    assert.ok(Math.abs(peak[0]! - -6.0) <= 0.5 && Math.abs(peak[1]! - -12.0) <= 0.5, `peaks ${peak}`);
    assert.match(play.stdout(), /played 72000 frames/);
  });

  it('play piped: no progress line', async function () {
    const play = spawnTracked(process.execPath, [CLI, 'play', '0', tone, '-s', sock]);
    await waitFor(() => fetchStatus(sock).then((st) => st.loops[0]!.state === 'waiting'), 15000, 'play to wait for a client');
    const rec = spawnTracked('parecord', ['-d', 'audioloop0', '--rate=48000', '--channels=2', '--latency-msec=50', path.join(tmp, 'heard.wav')]);
    const p = await finished(play, 'play');
    await finished(rec, 'parecord');
    assert.equal(p.code, 0, p.stderr);
    assert.ok(!/[\r\x1b]/.test(p.stderr), JSON.stringify(p.stderr));
    assert.match(p.stderr, /played 72000 frames/);
  });
});
