/**
 * Issue 10: any program as the server. The ALSA PCM plugin
 * (alsa/pcm_audioloop.c, freshly built in build/alsa/) with real ALSA
 * programs (arecord, aplay, ffmpeg -f alsa), OSS programs through alsa-oss's
 * libaoss, real clients (paplay, pw-record) on the real headless PipeWire and
 * a real daemon per test. ALSA is pointed at the fresh build with
 * ALSA_CONFIG_PATH (a config of our own: nothing installed system-wide is
 * read); one test checks the configuration the set-up installed.
 *
 * The daemon's socket dir is $TMP/audioloop and the ALSA programs get
 * XDG_RUNTIME_DIR=$TMP, so plain `audioloop:N` finds it by the default rule.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchStatus } from '../../src/control';
import type { DaemonStatus } from '../../src/daemon';
import { frameBytes, type PcmFormat } from '../../src/format';
import { parseWavHeader, readWavFile, wavHeader } from '../../src/wav';
import { checkCounter, counterPcm } from '../helpers/pcm';
import { finished, run, sleep, spawnTracked, stopTracked, waitFor, type Tracked } from '../helpers/proc';
import { requireSoundServer } from '../helpers/soundserver';
import { analyzeTone } from '../helpers/tone';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const PLUGIN = path.join(ROOT, 'build', 'alsa', 'libasound_module_pcm_audioloop.so');
const CONF = path.join(ROOT, 'alsa', '60-audioloop.conf');
const LIBAOSS = '/usr/lib/x86_64-linux-gnu/libaoss.so';
const S16: PcmFormat = { format: 's16le', rate: 48000, channels: 2 };
const INSTALLED_CONF = '/etc/alsa/conf.d/60-audioloop.conf';

/** See cli.test.ts: a graph cycle missed on the loaded 2-core machine loses a quantum before the loop; a systematic loss fails every attempt. */
const SAMPLE_RETRIES = 2;


/** utime + stime of a process, in clock ticks */
function cpuTicks(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}

describe('ALSA PCM plugin audioloop:N (real arecord/aplay/ffmpeg/aoss, real PipeWire)', function () {
  this.timeout(60000);
  let tmp: string;
  let sock: string;
  let alsaEnv: NodeJS.ProcessEnv;
  let tone: string;

  before(requireSoundServer);
  before(function () {
    assert.ok(fs.existsSync(PLUGIN), `${PLUGIN} is built (scripts/setup.sh runs make -C alsa)`);
  });
  beforeEach(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-alsa-'));
    sock = path.join(tmp, 'audioloop');
    const conf = path.join(tmp, 'asound.conf');
    fs.writeFileSync(conf, `pcm_type.audioloop { lib "${PLUGIN}" }\n` + fs.readFileSync(CONF, 'utf8'));
    alsaEnv = { ...process.env, ALSA_CONFIG_PATH: conf, XDG_RUNTIME_DIR: tmp };
    tone = path.join(tmp, 'tone440.wav');
    execFileSync('sox', ['-n', '-r', '48000', '-c', '2', '-b', '16', tone, 'synth', '1', 'sine', '440', 'vol', '0.5']);
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function startDaemon(): Promise<Tracked> {
    const c = path.join(tmp, 'audioloop.conf');
    fs.writeFileSync(c, 'audioloop_instances = 2\nbuffer_ms = 1000\n');
    const d = spawnTracked(process.execPath, [CLI, 'daemon', '-c', c, '-s', sock, '--sound-server', 'system']);
    await waitFor(
      async () => {
        if (d.child.exitCode !== null) throw new Error(`daemon exited: ${d.stderr()}`);
        return fetchStatus(sock).then(
          () => true,
          () => false,
        );
      },
      15000,
      'the daemon',
    );
    return d;
  }

  async function statusUntil(pred: (st: DaemonStatus) => boolean, what: string): Promise<DaemonStatus> {
    let last: DaemonStatus | null = null;
    try {
      return await waitFor(
        async () => {
          last = await fetchStatus(sock);
          return pred(last) ? last : null;
        },
        15000,
        what,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(last)}`);
    }
  }

  function alsa(cmd: string, args: string[], env: NodeJS.ProcessEnv = alsaEnv): Tracked {
    return spawnTracked(cmd, args, { env });
  }

  async function sinks(): Promise<string[]> {
    const r = await run('pactl', ['list', 'short', 'sinks']);
    return r.stdout.split('\n').map((l) => l.split('\t')[1] ?? '');
  }

  function assertTone(pcm: Buffer, fmt: PcmFormat, what: string): void {
    const t = analyzeTone(pcm, fmt);
    const info = `${what}: ${JSON.stringify(t)}`;
    assert.ok(Math.abs(t.freq - 440) < 440 * 0.005, `440 Hz: ${info}`);
    assert.ok(Math.abs(t.seconds - 1) < 0.03, `1 s of tone: ${info}`);
    assert.ok(t.peak > 0.45 && t.peak < 0.55, `level 0.5: ${info}`);
  }

  it('arecord -D audioloop:0 is the reading server: status names it, paplay plays a 440 Hz tone, the WAV has its frequency and length; the end is -ENODEV after every frame', async function () {
    this.retries(SAMPLE_RETRIES);
    await startDaemon();
    const out = path.join(tmp, 'got.wav');
    const rec = alsa('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', '-r', '48000', '-c', '2', out]);
    const st = await statusUntil((s) => s.loops[0]?.state === 'waiting', 'arecord to open loop 0');
    assert.equal(st.loops[0]!.mode, 'read');
    assert.deepEqual(st.loops[0]!.format, S16);
    assert.equal(st.loops[0]!.server?.app, 'arecord');
    assert.equal(st.loops[0]!.server?.pid, rec.pid);
    const text = await run(process.execPath, [CLI, 'status', '-s', sock]);
    assert.ok(text.stdout.includes(`arecord (pid ${rec.pid})`), text.stdout);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=1000', tone]);
    assert.equal((await finished(play, 30000, 'paplay')).code, 0);
    const r = await finished(rec, 20000, 'arecord');
    // arecord ends on any read error through prg_exit: exit 1, and its WAV
    // header keeps the provisional size it wrote first (2 GiB)
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /read error: No such device/);
    const buf = fs.readFileSync(out);
    const h = parseWavHeader(buf);
    assert.deepEqual(h.format, S16);
    assert.equal(h.dataOffset, 44);
    assert.equal(buf.readUInt32LE(40), 0x80000000, "arecord's provisional data size, 2 GiB (documented limit)");
    const data = buf.subarray(44);
    assert.equal(data.length % 4, 0);
    assertTone(data, S16, 'arecord');
    // every frame in flight reached the file: the last period was completed with silence
    const t = analyzeTone(data, S16);
    assert.ok(t.end < t.total - 1, `silence after the tone: ${JSON.stringify(t)}`);
  });

  it('arecord -f S24_3LE -c 1 gets every frame paplay plays, in order (sample-exact)', async function () {
    this.retries(SAMPLE_RETRIES);
    await startDaemon();
    const fmt: PcmFormat = { format: 's24le', rate: 48000, channels: 1 };
    const frames = 24000;
    const input = path.join(tmp, 'c24.wav');
    const pcm = counterPcm(fmt.format, 1, frames);
    fs.writeFileSync(input, Buffer.concat([wavHeader(fmt, pcm.length), pcm]));
    const out = path.join(tmp, 'got24.raw');
    const rec = alsa('arecord', ['-D', 'audioloop:1', '-t', 'raw', '-f', 'S24_3LE', '-r', '48000', '-c', '1', out]);
    await statusUntil((s) => s.loops[1]?.state === 'waiting' && s.loops[1]?.format?.format === 's24le', 'arecord to open loop 1 as s24le');
    const play = spawnTracked('paplay', ['-d', 'audioloop1', '--latency-msec=1000', input]);
    assert.equal((await finished(play, 30000, 'paplay')).code, 0);
    await finished(rec, 20000, 'arecord');
    const got = fs.readFileSync(out);
    const fb = frameBytes(fmt);
    const keep: Buffer[] = [];
    for (let o = 0; o + fb <= got.length; o += fb) if (!got.subarray(o, o + fb).equals(Buffer.alloc(fb))) keep.push(got.subarray(o, o + fb));
    const c = checkCounter(Buffer.concat(keep), fmt.format, 1);
    assert.equal(c.first, 0, JSON.stringify(c));
    assert.equal(c.frames, frames, JSON.stringify(c));
    assert.equal(c.bad, 0, JSON.stringify(c));
  });

  it('aplay -D audioloop:1 is the writing server: pw-record records every frame; aplay drains and exits 0', async function () {
    this.retries(SAMPLE_RETRIES);
    await startDaemon();
    const frames = 48000;
    const input = path.join(tmp, 'c16.wav');
    const pcm = counterPcm('s16le', 2, frames);
    fs.writeFileSync(input, Buffer.concat([wavHeader(S16, pcm.length), pcm]));
    const recFile = path.join(tmp, 'rec.wav');
    // server first: a client naming audioloop1 before it exists is refused; aplay's first write waits for it
    const pl = alsa('aplay', ['-D', 'audioloop:1', input]);
    const st = await statusUntil((s) => s.loops[1]?.server?.app === 'aplay' && s.loops[1]?.state === 'waiting', 'aplay to open loop 1');
    const rec = spawnTracked('pw-record', ['--target', 'audioloop1', '--format', 's16', '--rate', '48000', '--channels', '2', recFile]);
    assert.equal(st.loops[1]!.mode, 'write');
    assert.equal(st.loops[1]!.server?.pid, pl.pid);
    const p = await finished(pl, 30000, 'aplay');
    assert.equal(p.code, 0, p.stderr);
    // drain() returned after the daemon played everything out
    assert.equal((await fetchStatus(sock)).loops[1]!.server, null, 'the loop is closed when aplay exits');
    stopTracked(rec.pid);
    await finished(rec, 10000, 'pw-record');
    const { data } = await readWavFile(recFile);
    const fb = 4;
    const keep: Buffer[] = [];
    for (let o = 0; o + fb <= data.length; o += fb) if (data.readUInt32LE(o) !== 0) keep.push(data.subarray(o, o + fb));
    const c = checkCounter(Buffer.concat(keep), 's16le', 2);
    assert.equal(c.first, 0, JSON.stringify(c));
    assert.equal(c.frames, frames, JSON.stringify(c));
    assert.equal(c.bad, 0, JSON.stringify(c));
  });

  it('ffmpeg -f alsa -i audioloop:0 (poll-driven reader) records the tone; ffmpeg finalizes its WAV and exits 0', async function () {
    this.retries(SAMPLE_RETRIES);
    await startDaemon();
    const out = path.join(tmp, 'ff.wav');
    const ff = alsa('ffmpeg', ['-nostdin', '-y', '-loglevel', 'warning', '-f', 'alsa', '-sample_rate', '48000', '-channels', '2', '-i', 'audioloop:0', out]);
    const st = await statusUntil((s) => s.loops[0]?.state === 'waiting', 'ffmpeg to open loop 0');
    assert.equal(st.loops[0]!.server?.app, 'ffmpeg');
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=1000', tone]);
    assert.equal((await finished(play, 30000, 'paplay')).code, 0);
    const r = await finished(ff, 20000, 'ffmpeg');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /No such device/);
    const buf = fs.readFileSync(out);
    const h = parseWavHeader(buf);
    assert.deepEqual(h.format, S16);
    assert.equal(h.dataBytes, buf.length - h.dataOffset, 'ffmpeg wrote the final size');
    assertTone(buf.subarray(h.dataOffset), S16, 'ffmpeg');
  });

  it('the first read waits for the client: nothing is recorded and the node exists until paplay plays (blocking and --nonblock, which does not spin)', async function () {
    this.retries(SAMPLE_RETRIES);
    await startDaemon();
    for (const [loop, extra] of [[0, []], [1, ['--nonblock']]] as const) {
      const out = path.join(tmp, `wait${loop}.wav`);
      const rec = alsa('arecord', ['-D', `audioloop:${loop}`, ...extra, '-f', 'S16_LE', '-r', '48000', '-c', '2', out]);
      await statusUntil((s) => s.loops[loop]?.state === 'waiting', `arecord ${extra.join(' ')} to wait`);
      const t0 = cpuTicks(rec.pid);
      await sleep(1500);
      const ticks = cpuTicks(rec.pid) - t0;
      assert.ok((await sinks()).includes(`audioloop${loop}`), 'the node exists while the server waits');
      assert.equal(fs.statSync(out).size, 44, 'only the header: the first read returned nothing');
      assert.equal((await fetchStatus(sock)).loops[loop]!.state, 'waiting');
      // 1.5 s of busy polling would be ~150 ticks; a waiting poll() is 0-2
      assert.ok(ticks <= 10, `arecord ${extra.join(' ')} used ${ticks} CPU ticks while waiting`);
      const play = spawnTracked('paplay', ['-d', `audioloop${loop}`, '--latency-msec=1000', tone]);
      assert.equal((await finished(play, 30000, 'paplay')).code, 0);
      await finished(rec, 20000, 'arecord');
      assertTone(fs.readFileSync(out).subarray(44), S16, `arecord ${extra.join(' ')}`);
    }
  });

  it('a second arecord on the same loop gets EBUSY naming the first (arecord, pid); so does arecord on a loop audioloop record holds', async function () {
    await startDaemon();
    const first = alsa('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', '-r', '48000', '-c', '2', path.join(tmp, 'a.wav')]);
    await statusUntil((s) => s.loops[0]?.server?.pid === first.pid, 'the first arecord');
    const t0 = Date.now();
    const second = await run('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', '-r', '48000', '-c', '2', path.join(tmp, 'b.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.ok(Date.now() - t0 < 5000, 'refused at once');
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /EBUSY/);
    assert.ok(second.stderr.includes(`already open by arecord (pid ${first.pid})`), second.stderr);
    assert.match(second.stderr, /Device or resource busy/);
    assert.equal(first.child.exitCode, null, 'the first server is untouched');

    const cliRec = spawnTracked(process.execPath, [CLI, 'record', '1', path.join(tmp, 'c.wav'), '-s', sock]);
    await statusUntil((s) => s.loops[1]?.server?.pid === cliRec.pid, 'audioloop record on loop 1');
    const third = await run('arecord', ['-D', 'audioloop:LOOP=1', '-f', 'S16_LE', '-r', '48000', '-c', '2', path.join(tmp, 'd.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.equal(third.code, 1, third.stderr);
    assert.ok(third.stderr.includes(`already open by audioloop record (pid ${cliRec.pid})`), third.stderr);
    assert.equal(cliRec.child.exitCode, null);
  });

  it('no daemon: arecord fails at open with a clear message, at once (no socket, a stale socket, a loop not served)', async function () {
    const t0 = Date.now();
    const r = await run('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', path.join(tmp, 'x.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.ok(Date.now() - t0 < 3000, `fast: ${Date.now() - t0} ms`);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`no audioloop daemon at ${sock}/audioloop0`), r.stderr);
    assert.match(r.stderr, /audio open error: No such file or directory/);

    // a daemon killed with SIGKILL leaves its socket files: connect() is refused
    const d = await startDaemon();
    d.child.kill('SIGKILL');
    await finished(d, 10000, 'the daemon');
    assert.ok(fs.existsSync(path.join(sock, 'audioloop0')), 'the stale socket is there');
    const t1 = Date.now();
    const s = await run('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', path.join(tmp, 'y.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.ok(Date.now() - t1 < 3000, `fast: ${Date.now() - t1} ms`);
    assert.equal(s.code, 1, s.stderr);
    assert.match(s.stderr, /no audioloop daemon answers at .*audioloop0 \(Connection refused/);

    await startDaemon();
    const n = await run('arecord', ['-D', 'audioloop:7', '-f', 'S16_LE', path.join(tmp, 'z.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.equal(n.code, 1, n.stderr);
    assert.match(n.stderr, /no loop instance 7: the daemon in .* does not serve it/);
    assert.match(n.stderr, /No such device/);
  });

  it('bad input fails in hw_params with arecord\'s own message (format, channels); a rate below 8000 is refined to 8000; the daemon never sees them', async function () {
    await startDaemon();
    const fmt = await run('arecord', ['-D', 'audioloop:0', '-f', 'S8', '-r', '48000', '-c', '2', path.join(tmp, 'f.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.equal(fmt.code, 1, fmt.stderr);
    assert.match(fmt.stderr, /Sample format non available/);
    for (const f of ['U8', 'S16_LE', 'S24_3LE', 'S32_LE', 'FLOAT_LE']) assert.ok(fmt.stderr.includes(`- ${f}\n`), `${f} offered: ${fmt.stderr}`);
    assert.equal((fmt.stderr.match(/^- /gm) ?? []).length, 5, `exactly five formats: ${fmt.stderr}`);
    const ch = await run('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', '-r', '48000', '-c', '9', path.join(tmp, 'c.wav')], { env: alsaEnv, timeoutMs: 10000 });
    assert.equal(ch.code, 1, ch.stderr);
    assert.match(ch.stderr, /Channels count non available/);
    const st = await fetchStatus(sock);
    assert.equal(st.loops[0]!.state, 'idle', 'no OPEN reached the daemon');

    const low = alsa('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', '-r', '4000', '-c', '1', path.join(tmp, 'r.wav')]);
    const opened = await statusUntil((s) => s.loops[0]?.state === 'waiting', 'arecord at the refined rate');
    assert.deepEqual(opened.loops[0]!.format, { format: 's16le', rate: 8000, channels: 1 });
    await waitFor(() => /rate is not accurate \(requested = 4000Hz, got = 8000Hz\)/.test(low.stderr()), 5000, "arecord's warning");
  });

  it('an OSS program as the reading server through alsa-oss: ffmpeg -f oss -i /dev/dsp (read-only) with ALSA_OSS_PCM_DEVICE=audioloop:0 records the tone', async function () {
    this.retries(SAMPLE_RETRIES);
    assert.ok(fs.existsSync(LIBAOSS), 'alsa-oss is installed (scripts/setup.sh)');
    await startDaemon();
    const out = path.join(tmp, 'oss.wav');
    // aoss is `LD_PRELOAD=libaoss.so exec "$@"` when /proc/asound exists; this
    // container has no ALSA kernel driver, so do what aoss does where it does not
    const env = { ...alsaEnv, ALSA_OSS_PCM_DEVICE: 'audioloop:0' };
    const cmd = ['ffmpeg', '-nostdin', '-y', '-loglevel', 'warning', '-f', 'oss', '-sample_rate', '48000', '-channels', '2', '-i', '/dev/dsp', out];
    const oss = fs.existsSync('/proc/asound') ? spawnTracked('aoss', cmd, { env }) : spawnTracked(cmd[0]!, cmd.slice(1), { env: { ...env, LD_PRELOAD: LIBAOSS } });
    // aoss sets the parameters one ioctl at a time (8000 Hz mono u8 first): the loop opens once, with the last ones
    const st = await statusUntil((s) => s.loops[0]?.state === 'waiting', 'the OSS program to open loop 0');
    assert.equal(st.loops[0]!.server?.app, 'ffmpeg');
    assert.deepEqual(st.loops[0]!.format, S16);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=1000', tone]);
    assert.equal((await finished(play, 30000, 'paplay')).code, 0);
    const r = await finished(oss, 20000, 'ffmpeg -f oss');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\/dev\/dsp: No such device/, 'read() failed with ENODEV at the end');
    const { format, data } = await readWavFile(out);
    assert.deepEqual(format, S16);
    assertTone(data, S16, 'ffmpeg -f oss');
  });

  it('PortAudio (PyAudio, callback mode: poll-driven) on the installed `audioloop` device records the tone and stops its stream at the end', async function () {
    this.retries(SAMPLE_RETRIES);
    // PortAudio lists devices from the full ALSA configuration, so this uses
    // the one scripts/setup.sh installed (see the installation tests)
    if (!fs.existsSync(INSTALLED_CONF) || !fs.existsSync('/usr/bin/python3')) {
      if (process.env.CI === 'true' && !process.env.AUDIOLOOP_NO_ALSA_INSTALL) assert.fail('setup installs the ALSA config and python3-pyaudio');
      this.skip();
    }
    await startDaemon();
    const script = path.join(tmp, 'pa.py');
    fs.writeFileSync(
      script,
      [
        'import sys, time, pyaudio',
        'pa = pyaudio.PyAudio()',
        "idx = [i for i in range(pa.get_device_count()) if pa.get_device_info_by_index(i)['name'] == 'audioloop'][0]",
        'chunks = []',
        'def cb(data, n, info, status):',
        '    chunks.append(data)',
        '    return (None, pyaudio.paContinue)',
        's = pa.open(format=pyaudio.paInt16, channels=2, rate=48000, input=True, input_device_index=idx, frames_per_buffer=1024, stream_callback=cb)',
        't0 = time.time()',
        'while s.is_active() and time.time() - t0 < 20:',
        '    time.sleep(0.02)',
        "print('ACTIVE', s.is_active(), file=sys.stderr, flush=True)",
        "open(sys.argv[1], 'wb').write(b''.join(chunks))",
        'import os; os._exit(0)',
      ].join('\n') + '\n',
    );
    const out = path.join(tmp, 'pa.raw');
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: tmp };
    delete env.ALSA_CONFIG_PATH;
    const py = spawnTracked('/usr/bin/python3', [script, out], { env });
    const st = await statusUntil((s) => s.loops[0]?.state === 'waiting', 'PortAudio to open loop 0');
    assert.equal(st.loops[0]!.server?.pid, py.pid);
    const play = spawnTracked('paplay', ['-d', 'audioloop0', '--latency-msec=1000', tone]);
    assert.equal((await finished(play, 30000, 'paplay')).code, 0);
    const r = await finished(py, 25000, 'the PortAudio recorder');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ACTIVE False/, 'the stream stopped by itself at the end');
    assertTone(fs.readFileSync(out), S16, 'PortAudio');
  });

  describe('installation', function () {
    it('install-alsa.sh / uninstall-alsa.sh: system layout under a prefix, and the --user block in asoundrc that leaves the rest of the file alone', async function () {
      const prefix = path.join(tmp, 'prefix');
      const env = { ...process.env, AUDIOLOOP_ALSA_PREFIX: prefix };
      const ins = await run('bash', [path.join(ROOT, 'scripts', 'install-alsa.sh'), '--system'], { env });
      assert.equal(ins.code, 0, ins.stderr);
      const libdir = execFileSync('pkg-config', ['--variable=libdir', 'alsa'], { encoding: 'utf8' }).trim();
      const lib = path.join(prefix, libdir, 'alsa-lib', 'libasound_module_pcm_audioloop.so');
      const conf = path.join(prefix, 'etc', 'alsa', 'conf.d', '60-audioloop.conf');
      assert.ok(fs.readFileSync(lib).equals(fs.readFileSync(PLUGIN)), 'the plugin is installed');
      assert.ok(fs.readFileSync(conf, 'utf8').includes(`lib "${lib}"`), 'the config names it');
      // the installed config works: arecord opens loop 0 through it
      await startDaemon();
      const rec = spawnTracked('arecord', ['-D', 'audioloop:0', '-f', 'S16_LE', path.join(tmp, 'i.wav')], { env: { ...alsaEnv, ALSA_CONFIG_PATH: conf } });
      await statusUntil((s) => s.loops[0]?.server?.pid === rec.pid, 'arecord through the installed config');
      stopTracked(rec.pid);
      await finished(rec, 10000, 'arecord');
      const un = await run('bash', [path.join(ROOT, 'scripts', 'uninstall-alsa.sh'), '--system'], { env });
      assert.equal(un.code, 0, un.stderr);
      assert.ok(!fs.existsSync(lib) && !fs.existsSync(conf), 'both removed');

      const cfg = path.join(tmp, 'cfg');
      fs.mkdirSync(path.join(cfg, 'alsa'), { recursive: true });
      const rc = path.join(cfg, 'alsa', 'asoundrc');
      fs.writeFileSync(rc, 'pcm.mine { type null }\n');
      const uenv = { ...process.env, XDG_CONFIG_HOME: cfg };
      for (let i = 0; i < 2; i++) assert.equal((await run('bash', [path.join(ROOT, 'scripts', 'install-alsa.sh'), '--user'], { env: uenv })).code, 0);
      const text = fs.readFileSync(rc, 'utf8');
      assert.ok(text.startsWith('pcm.mine { type null }\n'), text);
      assert.equal(text.split('>>> audioloop ALSA PCM').length, 2, 'installing twice leaves one block');
      assert.ok(text.includes(`lib "${PLUGIN}"`), text);
      assert.equal((await run('bash', [path.join(ROOT, 'scripts', 'uninstall-alsa.sh'), '--user'], { env: uenv })).code, 0);
      assert.equal(fs.readFileSync(rc, 'utf8'), 'pcm.mine { type null }\n', 'only our block was removed');
    });

    it('the configuration scripts/setup.sh installed (as root: /etc/alsa/conf.d) serves plain `arecord -D audioloop:N`', async function () {
      this.retries(SAMPLE_RETRIES);
      const user = path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'alsa', 'asoundrc');
      const installed = fs.existsSync(INSTALLED_CONF) || (fs.existsSync(user) && fs.readFileSync(user, 'utf8').includes('>>> audioloop ALSA PCM'));
      if (!installed) {
        // setup.sh installs it unless AUDIOLOOP_NO_ALSA_INSTALL is set
        if (process.env.CI === 'true' && !process.env.AUDIOLOOP_NO_ALSA_INSTALL) assert.fail('scripts/setup.sh did not install the ALSA config');
        this.skip();
      }
      await startDaemon();
      const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: tmp };
      delete env.ALSA_CONFIG_PATH;
      const out = path.join(tmp, 'sys.wav');
      const rec = spawnTracked('arecord', ['-D', 'audioloop:1', '-f', 'S16_LE', '-r', '48000', '-c', '2', out], { env });
      await statusUntil((s) => s.loops[1]?.server?.pid === rec.pid, 'arecord through the installed config');
      const play = spawnTracked('paplay', ['-d', 'audioloop1', '--latency-msec=1000', tone]);
      assert.equal((await finished(play, 30000, 'paplay')).code, 0);
      await finished(rec, 20000, 'arecord');
      assertTone(fs.readFileSync(out).subarray(44), S16, 'arecord (installed config)');
    });
  });
});
