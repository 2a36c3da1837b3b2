/**
 * Issue 9: server-first order for clients. With no server on loop 0 there is
 * no node audioloop0, and a client naming it must be refused (or kept
 * silent), never routed to another device. Without audioloop's WirePlumber
 * rule (conf/wireplumber/audioloop-clients.lua) WirePlumber 0.4.13 links such
 * a stream to the default sink/source: measured 287644 non-silent samples of
 * a 3 s tone from paplay on the "speakers", 182293 of a "microphone" in 2 s
 * of parecord.
 *
 * Here the default sink is a real null sink ("speakers") whose monitor is
 * recorded, and the default source is a real source (a pw-loopback) playing a
 * 1 kHz tone all along (the "microphone"). Each real client names audioloop0
 * and must fail, with not one non-silent sample on the speakers and none
 * recorded. Control runs first prove that both measurements see a tone.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { wavHeader } from '../../src/wav';
import type { PcmFormat } from '../../src/format';
import { requireSoundServer } from '../helpers/soundserver';
import { spawn, type ChildProcess } from 'node:child_process';
import { run, sleep, spawnTracked, stopTracked, waitFor } from '../helpers/proc';

const FMT: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
const SPEAKERS = 'al-test-speakers';
const MIC_IN = 'al-test-mic-in';
const MIC = 'al-test-mic';

function sineWav(file: string, seconds: number, hz: number): void {
  const frames = Math.round(FMT.rate * seconds);
  const pcm = Buffer.alloc(frames * 4);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(16000 * Math.sin((2 * Math.PI * hz * i) / FMT.rate));
    pcm.writeInt16LE(v, i * 4);
    pcm.writeInt16LE(v, i * 4 + 2);
  }
  fs.writeFileSync(file, Buffer.concat([wavHeader(FMT, pcm.length), pcm]));
}

/** non-zero s16 samples in a raw file or in a WAV file's data */
function nonSilent(file: string): { samples: number; nonzero: number } {
  if (!fs.existsSync(file)) return { samples: 0, nonzero: 0 };
  let b = fs.readFileSync(file);
  if (b.subarray(0, 4).toString('latin1') === 'RIFF') {
    const i = b.indexOf('data', 12, 'latin1');
    b = i < 0 ? Buffer.alloc(0) : b.subarray(i + 8);
  }
  let nonzero = 0;
  for (let i = 0; i + 1 < b.length; i += 2) if (b.readInt16LE(i) !== 0) nonzero++;
  return { samples: b.length >> 1, nonzero };
}

async function pactl(...args: string[]): Promise<string> {
  const r = await run('pactl', args);
  assert.equal(r.code, 0, `pactl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

async function nodeNames(): Promise<string[]> {
  const r = await run('pw-dump', []);
  const objs = JSON.parse(r.stdout) as { type: string; info?: { props?: Record<string, unknown> } }[];
  return objs.filter((o) => o.type === 'PipeWire:Interface:Node').map((o) => String(o.info?.props?.['node.name']));
}

const RAW = ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '--latency-msec=20'];

describe('server-first order for clients (issue 9): no server, a client naming audioloop0 is refused and nothing leaks', function () {
  this.timeout(60000);
  let tmp = '';
  let speakersModule = '';
  let oldSink = '';
  let oldSource = '';
  // the microphone lives through all tests of this file: started here, not
  // with spawnTracked (the root hooks stop tracked processes after each test),
  // and stopped by PID in after()
  let loopback: ChildProcess | null = null;
  let mic: ChildProcess | null = null;
  let tone = '';

  before(async function () {
    requireSoundServer.call(this);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-first-'));
    tone = path.join(tmp, 'tone.wav');
    sineWav(tone, 3, 440);
    const micTone = path.join(tmp, 'mic.wav');
    sineWav(micTone, 120, 1000);
    oldSink = await pactl('get-default-sink');
    oldSource = await pactl('get-default-source');
    speakersModule = await pactl('load-module', 'module-null-sink', `sink_name=${SPEAKERS}`);
    loopback = spawn('pw-loopback', [
      `--capture-props=media.class=Audio/Sink node.name=${MIC_IN} audio.position=[FL FR]`,
      `--playback-props=media.class=Audio/Source node.name=${MIC} audio.position=[FL FR]`,
    ], { stdio: 'ignore' });
    await waitFor(async () => (await nodeNames()).includes(MIC) && (await nodeNames()).includes(SPEAKERS), 10000, 'the speakers and the microphone');
    await pactl('set-default-sink', SPEAKERS);
    await pactl('set-default-source', MIC);
    mic = spawn('paplay', ['-d', MIC_IN, micTone], { stdio: 'ignore' });
    assert.ok(!(await nodeNames()).includes('audioloop0'), 'no audioloop0: no server holds loop 0');
  });

  after(async function () {
    for (const c of [mic, loopback]) {
      if (c && c.exitCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await gone;
      }
    }
    if (oldSink) await run('pactl', ['set-default-sink', oldSink]);
    if (oldSource) await run('pactl', ['set-default-source', oldSource]);
    if (speakersModule) await run('pactl', ['unload-module', speakersModule]);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** plays with `cmd` while the speakers' monitor is recorded; returns the player's result and what the speakers got */
  async function playAndListen(name: string, cmd: string, args: string[]) {
    const out = path.join(tmp, `speakers-${name}.raw`);
    const rec = spawnTracked('parecord', ['-d', `${SPEAKERS}.monitor`, ...RAW, out]);
    await sleep(500);
    const p = await run(cmd, args, { timeoutMs: 10000 });
    await sleep(500);
    stopTracked(rec.pid);
    await rec.done;
    return { p, heard: nonSilent(out) };
  }

  async function recordFor(name: string, cmd: string, args: string[], out: string) {
    const p = await run(cmd, args, { timeoutMs: 3000 });
    return { p, got: nonSilent(out), name };
  }

  it('control: a tone played to the default sink is heard on the speakers; the microphone records a tone', async function () {
    const { p, heard } = await playAndListen('control', 'paplay', [tone]);
    assert.equal(p.code, 0, p.stderr);
    assert.ok(heard.nonzero > 200000, `the speakers heard the 3 s tone: ${heard.nonzero} non-silent samples`);
    const out = path.join(tmp, 'mic-control.raw');
    const { got } = await recordFor('control', 'parecord', [...RAW, out], out);
    assert.ok(got.nonzero > 50000, `parecord of the default source recorded the microphone: ${got.nonzero} non-silent samples`);
  });

  const players: [string, string, string[]][] = [
    ['paplay', 'paplay', ['-d', 'audioloop0']],
    ['pw-play', 'pw-play', ['--target', 'audioloop0']],
    ['gst pulsesink', 'gst-launch-1.0', ['pulsesink device=audioloop0']],
    ['gst pipewiresink', 'gst-launch-1.0', ['pipewiresink target-object=audioloop0']],
  ];
  for (const [name, cmd, args] of players) {
    it(`${name} naming audioloop0 fails, and not one sample reaches the default sink`, async function () {
      const full = cmd === 'gst-launch-1.0'
        ? ['-q', 'filesrc', `location=${tone}`, '!', 'wavparse', '!', 'audioconvert', '!', 'audioresample', '!', ...args[0]!.split(' ')]
        : [...args, tone];
      const { p, heard } = await playAndListen(name.replace(/ /g, '-'), cmd, full);
      assert.notEqual(p.code, 0, `${name} is refused; stdout ${p.stdout} stderr ${p.stderr}`);
      assert.ok(heard.samples > 0, 'the speakers were recorded');
      assert.equal(heard.nonzero, 0, `${name} leaked ${heard.nonzero} non-silent samples to the default sink`);
    });
  }

  const recorders: [string, string, (out: string) => string[]][] = [
    ['parecord', 'parecord', (out) => ['-d', 'audioloop0', ...RAW, out]],
    ['pw-record', 'pw-record', (out) => ['--target', 'audioloop0', '--format=s16', '--rate=48000', '--channels=2', out]],
    ['gst pulsesrc', 'gst-launch-1.0', (out) => ['-q', 'pulsesrc', 'device=audioloop0', 'num-buffers=100', '!', 'audio/x-raw,format=S16LE,rate=48000,channels=2', '!', 'filesink', `location=${out}`]],
  ];
  for (const [name, cmd, args] of recorders) {
    it(`${name} naming audioloop0 fails and records nothing of the default source (a tone)`, async function () {
      const out = path.join(tmp, `rec-${name.replace(/ /g, '-')}.raw`);
      const { p, got } = await recordFor(name, cmd, args(out), out);
      assert.notEqual(p.code, 0, `${name} is refused; stderr ${p.stderr}`);
      assert.ok(p.signal === null, `${name} ended by itself (refused), not by our time limit`);
      assert.equal(got.nonzero, 0, `${name} recorded ${got.nonzero} non-silent samples`);
    });
  }

  it('a daemon killed with SIGKILL: paplay playing into audioloop0 is ended, not moved to the default sink', async function () {
    const sockDir = path.join(tmp, 'sock');
    fs.mkdirSync(sockDir, { recursive: true });
    const cli = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
    const daemon = spawnTracked('node', [cli, 'daemon', '-s', sockDir, '--sound-server', 'system']);
    await waitFor(() => fs.existsSync(path.join(sockDir, 'control')) || fs.readdirSync(sockDir).length > 0, 10000, 'the daemon');
    const rec = spawnTracked('node', [cli, 'record', '0', path.join(tmp, 'kill.wav'), '-s', sockDir]);
    await waitFor(async () => (await nodeNames()).includes('audioloop0'), 10000, 'audioloop0');
    const long = path.join(tmp, 'long.wav');
    sineWav(long, 20, 440);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', long]);
    await sleep(1000);
    const out = path.join(tmp, 'speakers-kill.raw');
    const listen = spawnTracked('parecord', ['-d', `${SPEAKERS}.monitor`, ...RAW, out]);
    await sleep(500);
    daemon.child.kill('SIGKILL');
    const p = await play.done;
    await sleep(1000);
    stopTracked(listen.pid);
    await listen.done;
    await rec.done;
    assert.equal(p.code, 1, `paplay's stream was ended: ${p.stderr}`);
    const heard = nonSilent(out);
    assert.ok(heard.samples > 0, 'the speakers were recorded');
    assert.equal(heard.nonzero, 0, `after the daemon died, paplay leaked ${heard.nonzero} non-silent samples to the default sink`);
  });
});
