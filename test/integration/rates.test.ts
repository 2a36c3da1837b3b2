/**
 * Issue 9: a loop at a rate other than 48 kHz is bit-exact with a client at
 * the same rate. The embedded PipeWire (scripts/soundserver.sh) allows the
 * graph 44100/48000/88200/96000 Hz (conf/pipewire/audioloop-rates.conf) and
 * our node asks for its rate (node.rate), so a 44.1 kHz loop and a 44.1 kHz
 * client meet without resampling. Without the drop-in the same run is
 * resampled through the 48 kHz graph: 29 frames of filter delay at the start
 * and ringing at every step of the counter (177 broken steps in 2 s).
 * `status` says when a loop's rate is one the graph may not run at.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { wavHeader, readWavFile } from '../../src/wav';
import type { PcmFormat } from '../../src/format';
import { fetchStatus } from '../../src/control';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, stopTracked, waitFor, type Tracked } from '../helpers/proc';
import { checkCounter, counterPcm } from '../helpers/pcm';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const F44: PcmFormat = { format: 's16le', rate: 44100, channels: 2 };
// a whole number of 1024-frame quanta: pw-play drops a last partial quantum
const FRAMES = 84 * 1024;

async function finished(t: Tracked, ms: number, what: string) {
  const timer = setTimeout(() => stopTracked(t.pid), ms);
  const r = await t.done;
  clearTimeout(timer);
  assert.ok(r.signal === null || what === 'recorder', `${what} did not finish in ${ms} ms: ${r.stderr}`);
  return r;
}

describe('rates (issue 9): a 44.1 kHz loop with a 44.1 kHz client is bit-exact, both directions', function () {
  this.timeout(60000);
  let tmp = '';
  let sock = '';
  let input = '';

  before(async function () {
    requireSoundServer.call(this);
    const allowed = (await run('pw-metadata', ['-n', 'settings', '0'])).stdout;
    if (!/clock\.allowed-rates' value:'[^']*44100/.test(allowed)) {
      // the user's own PipeWire (not the embedded one): it may forbid 44100
      if (process.env.CI === 'true') assert.fail(`the test server does not allow 44100 Hz: ${allowed}`);
      this.skip();
    }
  });

  beforeEach(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-rates-'));
    sock = path.join(tmp, 'sock');
    input = path.join(tmp, 'c44.wav');
    const pcm = counterPcm('s16le', 2, FRAMES);
    fs.writeFileSync(input, Buffer.concat([wavHeader(F44, pcm.length), pcm]));
    spawnTracked(process.execPath, [CLI, 'daemon', '-s', sock, '--sound-server', 'system', '-n', '2']);
    await waitFor(async () => {
      try {
        return (await fetchStatus(sock)).loops.length === 2;
      } catch {
        return false;
      }
    }, 15000, 'the daemon');
  });

  afterEach(function () {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function waiting(instance: number): Promise<void> {
    await waitFor(async () => (await fetchStatus(sock)).loops[instance]?.state === 'waiting', 15000, `loop ${instance} to wait`);
  }

  function assertExact(data: Buffer, who: string): void {
    const c = checkCounter(data, 's16le', 2);
    assert.equal(c.first, 0, `${who}: starts at the first frame (${JSON.stringify(c)})`);
    assert.equal(c.bad, 0, `${who}: every frame is the counter, unchanged (${JSON.stringify(c)})`);
    assert.equal(c.frames, FRAMES, `${who}: all ${FRAMES} frames (${JSON.stringify(c)})`);
  }

  for (const [tool, args] of [
    ['paplay', (f: string) => ['-d', 'audioloop0', f]],
    ['pw-play', (f: string) => ['--target', 'audioloop0', f]],
  ] as const) {
    it(`${tool} plays a 44.1 kHz counter into a 44.1 kHz read loop: every frame arrives unchanged; status: not resampled`, async function () {
      const out = path.join(tmp, 'got.wav');
      const rec = spawnTracked(process.execPath, [CLI, 'record', '0', out, '-r', '44100', '-s', sock, '-q']);
      await waiting(0);
      const st = (await fetchStatus(sock)).loops[0]!;
      assert.equal(st.graph?.resampled, false, `status: ${JSON.stringify(st.graph)}`);
      const play = spawnTracked(tool, args(input));
      assert.equal((await finished(play, 30000, tool)).code, 0);
      assert.equal((await finished(rec, 20000, 'audioloop record')).code, 0);
      const { format, data } = await readWavFile(out);
      assert.deepEqual(format, F44);
      assertExact(data, tool);
    });
  }

  for (const [tool, args] of [
    ['pw-record', (f: string) => ['--target', 'audioloop1', '--format', 's16', '--rate', '44100', '--channels', '2', f]],
    ['parecord', (f: string) => ['-d', 'audioloop1', '--latency-msec=20', '--file-format=wav', '--format=s16le', '--rate=44100', '--channels=2', f]],
  ] as const) {
    it(`${tool} records a 44.1 kHz write loop at 44.1 kHz: every frame arrives unchanged`, async function () {
      const out = path.join(tmp, 'heard.wav');
      const play = spawnTracked(process.execPath, [CLI, 'play', '1', input, '-s', sock, '-q']);
      await waiting(1);
      const rec = spawnTracked(tool, args(out));
      assert.equal((await finished(play, 30000, 'audioloop play')).code, 0);
      // the daemon ends parecord's stream; pw-record waits for a signal
      if (tool === 'pw-record') stopTracked(rec.pid);
      await finished(rec, 10000, 'recorder');
      const { format, data } = await readWavFile(out);
      assert.deepEqual(format, F44);
      assertExact(data, tool);
    });
  }

  it('status marks a loop at a rate the graph may not run at (22050 Hz) as resampled', async function () {
    const out = path.join(tmp, 'low.wav');
    spawnTracked(process.execPath, [CLI, 'record', '0', out, '-r', '22050', '-s', sock, '-q']);
    await waiting(0);
    const st = await fetchStatus(sock);
    assert.deepEqual(st.graph?.allowedRates, [44100, 48000, 88200, 96000]);
    assert.equal(st.loops[0]!.graph?.resampled, true);
    assert.equal(st.loops[0]!.graph?.rate, 48000);
    const text = await run(process.execPath, [CLI, 'status', '-s', sock]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /s16le 2ch 22050Hz \(resampled: graph at 48000Hz\)/);
  });
});
