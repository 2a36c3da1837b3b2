/**
 * Level meters in status and `audioloop top`, with real clients playing a
 * sine of known level through the real headless PipeWire.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer } from '../../src/client';
import { fetchStatus } from '../../src/control';
import { fromFloat32 } from '../../src/dsp/convert';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, stopTracked, waitFor } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function sineS16(seconds: number, freq: number, amp: number, channels: number): Buffer {
  const frames = Math.round(48000 * seconds);
  const f = new Float32Array(frames * channels);
  for (let i = 0; i < frames; i++) for (let c = 0; c < channels; c++) f[i * channels + c] = amp * Math.sin((2 * Math.PI * freq * i) / 48000);
  return fromFloat32(f, 's16le');
}

describe('level meters and audioloop top (real daemon, real PipeWire)', function () {
  this.timeout(60000);
  let tmp: string;
  let dir: string;

  before(requireSoundServer);
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-top-'));
    dir = path.join(tmp, 'sock');
  });
  after(async function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });
  // the root afterEach stops every tracked process, so each test starts its daemon
  beforeEach(async function () {
    spawnTracked(process.execPath, [CLI, 'daemon', '-n', '2', '-s', dir, '--sound-server', 'system']);
    await waitFor(() => fetchStatus(dir).catch(() => null), 10000, 'the daemon');
  });

  it('status shows the level paplay plays into a reading loop (-6 dBFS sine), and top draws it', async function () {
    const srv = await openServer(0, { mode: 'read', format: 's16le', rate: 48000, channels: 2, socketDir: dir, app: 'meter-test' });
    srv.readable.resume();
    const file = path.join(tmp, 'sine.raw');
    fs.writeFileSync(file, sineS16(4, 1000, 0.5, 2)); // 0.5 = -6.02 dBFS
    const play = spawnTracked('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', 'audioloop0', file]);
    const levels = await waitFor(async () => {
      const l = (await fetchStatus(dir)).loops[0]!;
      return l.state === 'running' && l.levels && l.levels[0]! > -7 ? l.levels : null;
    }, 10000, 'the meter to rise');
    assert.equal(levels.length, 2);
    for (const db of levels) assert.ok(db >= -6.6 && db <= -5.9, `level ${db} dBFS for a -6.02 dBFS sine`);

    const top = await run(process.execPath, [CLI, 'top', '--once', '-s', dir]);
    assert.equal(top.code, 0, top.stderr);
    const row = top.stdout.split('\n').find((l) => l.startsWith('audioloop0'));
    assert.ok(row, top.stdout);
    assert.match(row, /running/);
    assert.match(row, /meter-test \(pid \d+\)/, 'the server app and pid');
    assert.match(row, new RegExp(`paplay \\(pid ${play.pid}\\)`), 'the client app and its pid');
    assert.match(row, /paplay/, 'the client app');
    const m = /\[(#*)(-*)\] (-?\d+\.\d)\/(-?\d+\.\d)/.exec(row);
    assert.ok(m, `a meter and two levels in: ${row}`);
    assert.equal(m[1]!.length + m[2]!.length, 16);
    assert.equal(m[1]!.length, 14, '-6 dB of a 60 dB meter fills 14 of 16 cells');
    assert.ok(Math.abs(Number(m[3]) + 6) < 0.7, row);
    const idle = top.stdout.split('\n').find((l) => l.startsWith('audioloop1'));
    assert.match(idle ?? '', /^audioloop1\s+idle/);
    stopTracked(play.pid);
    await srv.close();
  });

  it('a writing loop meters what the server writes (-12 dBFS mono)', async function () {
    const srv = await openServer(1, { mode: 'write', format: 's16le', rate: 48000, channels: 1, socketDir: dir });
    const rec = spawnTracked('parecord', ['--raw', '--latency-msec=20', '--format=s16le', '--rate=48000', '--channels=1', '-d', 'audioloop1', path.join(tmp, 'rec.raw')]);
    const pcm = sineS16(3, 440, 0.25, 1); // -12.04 dBFS
    const writing = srv.write(pcm);
    const levels = await waitFor(async () => {
      const l = (await fetchStatus(dir)).loops[1]!;
      return l.state === 'running' && l.levels && l.levels[0]! > -13 ? l.levels : null;
    }, 10000, 'the meter to rise');
    assert.equal(levels.length, 1);
    assert.ok(levels[0]! >= -12.7 && levels[0]! <= -11.9, `level ${levels[0]}`);
    stopTracked(rec.pid);
    await writing.catch(() => undefined);
    await srv.close();
  });

  it('top: --help exits 0, a bad option 2, no daemon 3', async function () {
    const h = await run(process.execPath, [CLI, 'top', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--interval/);
    const bad = await run(process.execPath, [CLI, 'top', '--interval', '5']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--interval must be an integer 100-10000/);
    const none = await run(process.execPath, [CLI, 'top', '--once', '-s', path.join(tmp, 'nothing-here')]);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /no daemon answers/);
  });
});
