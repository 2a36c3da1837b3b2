/**
 * The VoIP bridge against independent peers: ffmpeg (Debian's, with libopus)
 * decodes what `audioloop bridge --send` sends, from our SDP, and sends Opus
 * RTP that `audioloop bridge --receive` plays into a loop; paplay/parecord
 * are the loop's clients; a real headless PipeWire in between. Loopback
 * addresses only. Nothing is mocked.
 *
 * Tolerances (the chain is lossy: Opus at 128 kb/s, and PipeWire between):
 *   frequency  1000 Hz +- 0.5 % (zero crossings over the steady middle)
 *   level      RMS within +- 1 dB of the sine played
 *   purity     >= 95 % of the power at 1 kHz (Goertzel) in the middle
 *   length     the tone lasts as long as played, +- 150 ms (+ 300 ms with loss)
 */
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireSoundServer } from '../helpers/soundserver';
import { run, sleep, spawnTracked, stopTracked, waitFor, type Tracked } from '../helpers/proc';
import { fetchStatus } from '../../src/cli/main';
import { controlSocketPath } from '../../src/protocol';
import { readWavFile } from '../../src/wav';
import { decodeRtp, type RtpPacket } from '../../src/bridge/rtp';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'bin', 'audioloop');
const AMP = 0.3;
const FREQ = 1000;

function haveFfmpeg(): boolean {
  try {
    require('node:child_process').execFileSync('ffmpeg', ['-hide_banner', '-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** s16le interleaved sine, every channel the same */
function sinePcm(rate: number, channels: number, seconds: number): Buffer {
  const frames = Math.round(rate * seconds);
  const buf = Buffer.alloc(frames * channels * 2);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(AMP * 32767 * Math.sin((2 * Math.PI * FREQ * i) / rate));
    for (let c = 0; c < channels; c++) buf.writeInt16LE(v, (i * channels + c) * 2);
  }
  return buf;
}

/** one channel of s16le interleaved PCM as floats */
function channelOf(pcm: Buffer, channels: number, c: number): Float32Array {
  const n = Math.floor(pcm.length / (2 * channels));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = pcm.readInt16LE((i * channels + c) * 2) / 32768;
  return out;
}

interface Tone {
  /** first and last sample above the threshold */
  start: number;
  end: number;
  freq: number;
  rms: number;
  /** share of the power at FREQ (Goertzel), 0-1 */
  purity: number;
  /** longest run of 5 ms windows with RMS below 0.02 inside [start, end - 100 ms), in ms */
  longestQuietMs: number;
}

function analyse(x: Float32Array, rate: number): Tone {
  let start = -1;
  let end = -1;
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]!) > 0.02) {
      if (start < 0) start = i;
      end = i;
    }
  }
  assert.ok(start >= 0, 'no tone at all in the output');
  // the steady middle: skip 300 ms at either end
  const a = start + Math.round(0.3 * rate);
  const b = end - Math.round(0.3 * rate);
  assert.ok(b - a > rate / 4, `the tone is too short to measure: ${(end - start) / rate} s`);
  const crossings: number[] = [];
  for (let i = a + 1; i < b; i++) {
    const p = x[i - 1]!;
    const q = x[i]!;
    if (p < 0 && q >= 0) crossings.push(i - 1 + p / (p - q));
  }
  const freq = ((crossings.length - 1) * rate) / (crossings[crossings.length - 1]! - crossings[0]!);
  let energy = 0;
  for (let i = a; i < b; i++) energy += x[i]! * x[i]!;
  const rms = Math.sqrt(energy / (b - a));
  // Goertzel at FREQ in 50 ms blocks (short enough that a few hundred ppm of
  // resampling drift does not smear the phase), summed over [a, b)
  const w = (2 * Math.PI * FREQ) / rate;
  const coeff = 2 * Math.cos(w);
  const block = Math.round(rate / 20);
  let toneEnergy = 0;
  let blockEnergy = 0;
  for (let k = a; k + block <= b; k += block) {
    let s1 = 0;
    let s2 = 0;
    for (let i = k; i < k + block; i++) {
      const s0 = x[i]! + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
      blockEnergy += x[i]! * x[i]!;
    }
    // |X(f)|^2 = (A N / 2)^2 for a sine of amplitude A; its energy is A^2 N / 2 = 2 |X|^2 / N
    toneEnergy += (2 * (s1 * s1 + s2 * s2 - coeff * s1 * s2)) / block;
  }
  const purity = toneEnergy / blockEnergy;
  // longest quiet stretch inside the tone
  const win = Math.round(rate / 200);
  let run = 0;
  let longest = 0;
  // (up to 100 ms before the end: the stream's end itself fades through a short concealment)
  for (let i = start; i + win <= end - rate / 10; i += win) {
    let e = 0;
    for (let j = i; j < i + win; j++) e += x[j]! * x[j]!;
    if (Math.sqrt(e / win) < 0.02) longest = Math.max(longest, ++run);
    else run = 0;
  }
  return { start, end, freq, rms, purity, longestQuietMs: longest * 5 };
}

function checkTone(t: Tone, rate: number, seconds: number, lengthSlackS: number, what: string): void {
  const info = `${what}: ${JSON.stringify({ ...t, lengthS: (t.end - t.start) / rate })}`;
  assert.ok(Math.abs(t.freq - FREQ) < FREQ * 0.005, `frequency ${t.freq.toFixed(2)} Hz; ${info}`);
  const want = AMP / Math.SQRT2;
  const db = 20 * Math.log10(t.rms / want);
  assert.ok(Math.abs(db) < 1, `level ${db.toFixed(2)} dB off; ${info}`);
  assert.ok(t.purity > 0.95, `purity ${t.purity.toFixed(4)}; ${info}`);
  const len = (t.end - t.start) / rate;
  assert.ok(Math.abs(len - seconds) < lengthSlackS, `tone length ${len.toFixed(3)} s, played ${seconds} s; ${info}`);
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function udpPortBusy(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    s.once('error', () => {
      s.close();
      resolve(true);
    });
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

describe('bridge: Opus RTP with ffmpeg as the peer (real PipeWire)', function () {
  this.timeout(90000);
  let tmp: string;
  let sockDir: string;


  before(requireSoundServer);
  before(async function () {
    if (!haveFfmpeg()) {
      if (process.env.CI === 'true') throw new Error('CI=true and ffmpeg is missing (scripts/setup.sh installs it)');
      this.skip();
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-bridge-'));
    sockDir = path.join(tmp, 'sock');
  });
  beforeEach(async function () {
    // a daemon per test (the root hook stops every tracked process after each test)
    spawnTracked(process.execPath, [CLI, 'daemon', '-s', sockDir, '--sound-server', 'system', '-n', '2', '--log-level', 'warn']);
    await waitFor(async () => fs.existsSync(controlSocketPath(sockDir)) && (await fetchStatus(sockDir).catch(() => null)), 15000, 'the daemon');
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function bridge(args: string[]): Tracked {
    return spawnTracked(process.execPath, [CLI, 'bridge', ...args, '-s', sockDir]);
  }

  async function sinkExists(node: string): Promise<boolean> {
    const r = await run('pactl', ['list', 'short', 'sinks']);
    return r.stdout.split('\n').some((l) => l.split('\t')[1] === node);
  }

  async function sourceExists(node: string): Promise<boolean> {
    const r = await run('pactl', ['list', 'short', 'sources']);
    return r.stdout.split('\n').some((l) => l.split('\t')[1] === node);
  }

  for (const rate of [48000, 44100]) {
    it(`send (loop at ${rate} Hz): paplay a 1 kHz sine into audioloop0, ffmpeg decodes it from our SDP; exit 0 on ECONNRESET`, async function () {
      const port = await freeUdpPort();
      const sdp = path.join(tmp, `send-${rate}.sdp`);
      const wav = path.join(tmp, `send-${rate}.wav`);
      fs.rmSync(sdp, { force: true });
      const br = bridge(['0', '--send', `rtp://127.0.0.1:${port}`, '--sdp', sdp, '--rate', String(rate)]);
      await waitFor(() => fs.existsSync(sdp), 15000, 'the SDP file');
      await waitFor(() => sinkExists('audioloop0'), 10000, 'audioloop0 as a sink');
      const ff = spawnTracked('ffmpeg', ['-nostdin', '-hide_banner', '-loglevel', 'error', '-protocol_whitelist', 'file,udp,rtp', '-i', sdp, '-y', wav]);
      await waitFor(() => udpPortBusy(port), 15000, 'ffmpeg to listen');
      const seconds = 2;
      const raw = path.join(tmp, `sine-${rate}.raw`);
      fs.writeFileSync(raw, sinePcm(rate, 2, seconds));
      const play = await run('paplay', ['--raw', '--format=s16le', `--rate=${rate}`, '--channels=2', '-d', 'audioloop0', raw], { timeoutMs: 30000 });
      assert.equal(play.code, 0, play.stderr);
      const done = await Promise.race([br.done, sleep(15000).then(() => null)]);
      assert.ok(done, `the bridge did not end after the client went away: ${br.stderr()}`);
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stderr, /ECONNRESET/);
      const sent = /sent (\d+) packets/.exec(done.stderr);
      assert.ok(sent, done.stderr);
      // ffmpeg has everything once the file stops growing; then it finalizes the WAV on SIGINT
      let last = -1;
      await waitFor(async () => {
        const size = fs.existsSync(wav) ? fs.statSync(wav).size : 0;
        const still = size > 0 && size === last;
        last = size;
        await sleep(300);
        return still;
      }, 20000, 'ffmpeg to write everything');
      process.kill(ff.pid, 'SIGINT');
      const ffDone = await ff.done;
      assert.ok(ffDone.code === 0 || ffDone.code === 255, `ffmpeg: ${ffDone.code} ${ffDone.stderr}`);
      const { format, data } = await readWavFile(wav);
      assert.equal(format.rate, 48000);
      assert.equal(format.channels, 2);
      // every packet the bridge sent was decoded: 960 frames each
      assert.ok(Math.abs(data.length / 4 - Number(sent[1]) * 960) <= 960, `ffmpeg decoded ${data.length / 4} frames of ${Number(sent[1]) * 960} sent`);
      for (const c of [0, 1]) checkTone(analyse(channelOf(data, 2, c), 48000), 48000, seconds, 0.15, `channel ${c}`);
    });
  }

  it('send: the RTP is well-formed (one SSRC, seq +1, timestamp +960, marker on the first) and stops when the client goes away', async function () {
    const peer = dgram.createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    const packets: RtpPacket[] = [];
    let lastAt = 0;
    peer.on('message', (m) => {
      packets.push(decodeRtp(m));
      lastAt = Date.now();
    });
    try {
      const br = bridge(['0', '--send', `rtp://127.0.0.1:${peer.address().port}`, '--payload-type', '111']);
      await waitFor(() => sinkExists('audioloop0'), 15000, 'audioloop0 as a sink');
      const raw = path.join(tmp, 'sine-1s.raw');
      fs.writeFileSync(raw, sinePcm(48000, 2, 1));
      const play = await run('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '-d', 'audioloop0', raw], { timeoutMs: 30000 });
      assert.equal(play.code, 0, play.stderr);
      const done = await Promise.race([br.done, sleep(15000).then(() => null)]);
      assert.ok(done, 'the bridge ends when the client goes away');
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stderr, /client went away \(ECONNRESET\)/);
      const n = packets.length;
      await sleep(700);
      assert.equal(packets.length, n, 'nothing is sent after the end');
      assert.ok(lastAt > 0);
      // 1 s played: 50 packets, plus the silence the sink delivers around paplay's stream
      // (graph cycles before its data and while it drains) and the padded tail
      assert.ok(n >= 50 && n <= 75, `${n} packets for 1 s`);
      const p0 = packets[0]!;
      assert.equal(p0.marker, true);
      packets.forEach((p, i) => {
        assert.equal(p.payloadType, 111);
        assert.equal(p.ssrc, p0.ssrc);
        assert.equal(p.seq, (p0.seq + i) & 0xffff, `seq of packet ${i}`);
        assert.equal(p.timestamp, (p0.timestamp + 960 * i) >>> 0, `timestamp of packet ${i}`);
        if (i > 0) assert.equal(p.marker, false);
      });
      const st = await fetchStatus(sockDir);
      assert.equal(st.loops[0]!.state, 'idle');
      assert.equal(st.loops[0]!.bridge, undefined, 'metrics go with the bridge');
    } finally {
      peer.close();
    }
  });

  async function startReceiver(extra: string[] = []): Promise<{ br: Tracked; port: number }> {
    const br = bridge(['0', '--receive', 'rtp://127.0.0.1:0', ...extra]);
    const m = await waitFor(() => /receiving Opus RTP on 127\.0\.0\.1:(\d+)/.exec(br.stderr()), 15000, 'the receiver to bind');
    await waitFor(() => sourceExists('audioloop0'), 10000, 'audioloop0 as a source');
    return { br, port: Number(m[1]) };
  }

  function startParecord(file: string, rate = 48000): Tracked {
    return spawnTracked('parecord', ['--raw', '--latency-msec=20', '--format=s16le', `--rate=${rate}`, '--channels=2', '-d', 'audioloop0', file]);
  }

  function ffmpegSend(port: number, seconds: number): Tracked {
    const expr = `${AMP}*sin(2*PI*${FREQ}*t)`;
    return spawnTracked('ffmpeg', [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-re',
      '-f', 'lavfi', '-i', `aevalsrc=${expr}|${expr}:s=48000:d=${seconds}`,
      '-c:a', 'libopus', '-b:a', '128k', '-f', 'rtp', `rtp://127.0.0.1:${port}`,
    ]);
  }

  /** forwards UDP from its own port to `to`, dropping every `every`-th packet */
  async function lossyRelay(to: number, every: number): Promise<{ port: number; forwarded: () => number; dropped: () => number; close: () => void }> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    let n = 0;
    let dropped = 0;
    s.on('message', (m) => {
      n++;
      if (n % every === 0) dropped++;
      else s.send(m, to, '127.0.0.1');
    });
    return { port: s.address().port, forwarded: () => n - dropped, dropped: () => dropped, close: () => s.close() };
  }

  for (const rate of [48000, 16000]) {
    it(`receive (loop at ${rate} Hz): ffmpeg sends Opus RTP of a 1 kHz sine, parecord records it from audioloop0; metrics in status`, async function () {
      const { br, port } = await startReceiver(['--idle-exit', '1', '--rate', String(rate)]);
      const rec = path.join(tmp, `recv-${rate}.raw`);
      const pr = startParecord(rec, rate);
      await waitFor(() => /client .* started/.test(br.stderr()), 15000, 'parecord to start');
      const seconds = 3;
      const ff = ffmpegSend(port, seconds);
      const st = await waitFor(async () => {
        const s = await fetchStatus(sockDir);
        const b = s.loops[0]!.bridge;
        return b && (b.packets as number) > 50 ? b : null;
      }, 15000, 'metrics in audioloop status');
      assert.equal(st.role, 'receive');
      assert.equal(st.lost, 0);
      assert.ok((st.targetMs as number) >= 20 && (st.targetMs as number) <= 400, JSON.stringify(st));
      assert.ok(typeof st.driftPpm === 'number' && typeof st.jitterMs === 'number' && typeof st.fillMs === 'number', JSON.stringify(st));
      const text = await run(process.execPath, [CLI, 'status', '-s', sockDir]);
      assert.match(text.stdout, /audioloop0: bridge receive from 127\.0\.0\.1:\d+: \d+ packets, lost 0/);
      assert.equal((await ff.done).code, 0);
      const done = await Promise.race([br.done, sleep(15000).then(() => null)]);
      assert.ok(done, 'the bridge idles out');
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stderr, /idle exit: (\d+) packets, 0 lost/);
      await Promise.race([pr.done, sleep(5000)]);
      stopTracked(pr.pid);
      await pr.done;
      const pcm = fs.readFileSync(rec);
      for (const c of [0, 1]) checkTone(analyse(channelOf(pcm, 2, c), rate), rate, seconds, 0.15, `channel ${c}`);
    });
  }

  it('receive with loss: a relay drops every 10th packet; concealed, the output stays continuous and the right length', async function () {
    const { br, port } = await startReceiver(['--idle-exit', '1']);
    const relay = await lossyRelay(port, 10);
    try {
      const rec = path.join(tmp, 'recv-loss.raw');
      const pr = startParecord(rec);
      await waitFor(() => /client .* started/.test(br.stderr()), 15000, 'parecord to start');
      const seconds = 3;
      const ff = ffmpegSend(relay.port, seconds);
      assert.equal((await ff.done).code, 0);
      const done = await Promise.race([br.done, sleep(15000).then(() => null)]);
      assert.ok(done, 'the bridge idles out');
      assert.equal(done.code, 0, done.stderr);
      const m = /(\d+) packets, (\d+) lost, (\d+) late, (\d+) concealed/.exec(done.stderr);
      assert.ok(m, done.stderr);
      const [received, lost, , concealed] = m.slice(1).map(Number) as [number, number, number, number];
      assert.equal(received, relay.forwarded());
      assert.ok(relay.dropped() >= 13, `dropped ${relay.dropped()}`);
      // the last packet's loss (if the drop hit the very end) cannot be seen
      assert.ok(Math.abs(lost - relay.dropped()) <= 1, `bridge counted ${lost} lost, relay dropped ${relay.dropped()}`);
      assert.ok(concealed >= lost, `${concealed} concealed for ${lost} lost`);
      await Promise.race([pr.done, sleep(5000)]);
      stopTracked(pr.pid);
      await pr.done;
      const pcm = fs.readFileSync(rec);
      const t = analyse(channelOf(pcm, 2, 0), 48000);
      const len = (t.end - t.start) / 48000;
      assert.ok(Math.abs(len - seconds) < 0.3, `tone length ${len} s with 10% loss`);
      assert.ok(t.longestQuietMs <= 10, `no silence inside the tone: longest quiet ${t.longestQuietMs} ms`);
      assert.ok(Math.abs(t.freq - FREQ) < FREQ * 0.01, `frequency ${t.freq}`);
    } finally {
      relay.close();
    }
  });

  it('receive: when the recording client goes away the bridge ends with exit 0 (ECONNRESET handled)', async function () {
    const { br, port } = await startReceiver();
    const rec = path.join(tmp, 'recv-reset.raw');
    const pr = startParecord(rec);
    await waitFor(() => /client .* started/.test(br.stderr()), 15000, 'parecord to start');
    ffmpegSend(port, 20);
    await waitFor(async () => ((await fetchStatus(sockDir)).loops[0]!.bridge?.packets as number) > 20, 15000, 'packets flowing');
    process.kill(pr.pid, 'SIGINT');
    await pr.done;
    const done = await Promise.race([br.done, sleep(15000).then(() => null)]);
    assert.ok(done, 'the bridge ends when the client goes away');
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stderr, /client went away \(ECONNRESET\)/);
    await waitFor(async () => !(await sourceExists('audioloop0')), 10000, 'audioloop0 to go');
  });

  it('usage errors and --help', async function () {
    const help = await run(process.execPath, [CLI, 'bridge', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--send rtp:\/\/HOST:PORT/);
    assert.match(help.stdout, /--jitter MODE/);
    const both = await run(process.execPath, [CLI, 'bridge', '0', '--send', 'rtp://127.0.0.1:1', '--receive', 'rtp://127.0.0.1:2']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /exactly one of --send/);
    const name = await run(process.execPath, [CLI, 'bridge', '0', '--send', 'rtp://example.org:5004']);
    assert.equal(name.code, 2);
    assert.match(name.stderr, /not a numeric IP address/);
    const wrong = await run(process.execPath, [CLI, 'bridge', '0', '--receive', 'rtp://127.0.0.1:0', '--sdp', 'x.sdp']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /--sdp is a --send option/);
    const nodaemon = await run(process.execPath, [CLI, 'bridge', '0', '--send', 'rtp://127.0.0.1:9', '-s', path.join(tmp, 'nowhere')]);
    assert.equal(nodaemon.code, 3, nodaemon.stderr);
    const busyA = bridge(['1', '--send', 'rtp://127.0.0.1:9']);
    await waitFor(() => /waiting for a client/.test(busyA.stderr()), 15000, 'the first bridge on loop 1');
    const busy = await run(process.execPath, [CLI, 'bridge', '1', '--receive', 'rtp://127.0.0.1:0', '-s', sockDir]);
    assert.equal(busy.code, 4, busy.stderr);
    assert.match(busy.stderr, /EBUSY/);
  });
});
