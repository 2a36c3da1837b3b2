/**
 * `audioloop bridge`: the command line of the VoIP bridge (sender.ts,
 * receiver.ts). src/cli/main.ts only dispatches here.
 */
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import { RtpSender } from './sender';
import { RtpReceiver, type ReceiverEnd } from './receiver';
import { DYNAMIC_PT_MAX, DYNAMIC_PT_MIN } from './rtp';
import { BRIDGE_HELP } from './help';
import { waitSecondsToMs } from '../protocol';

/** Exit codes as in src/cli/main.ts. */
const EXIT = { OK: 0, ERROR: 1, USAGE: 2, NO_DAEMON: 3, REFUSED: 4, TIMEDOUT: 6 } as const;


class UsageError extends Error {}

/** --wait SEC as wait=MS (src/protocol.ts waitSecondsToMs) */
function waitArg(v: string | undefined): { waitMs?: number } {
  if (v === undefined) return {};
  const ms = waitSecondsToMs(v);
  if (ms === null) throw new UsageError(`--wait must be a number of seconds, 0.001-86400, got "${v}"`);
  return { waitMs: ms };
}

function intArg(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${name} must be an integer ${min}-${max}, got "${v}"`);
  return Number(v);
}

/** rtp://HOST:PORT (IPv6 in brackets) -> host and port */
export function parseRtpUrl(v: string, opt: string, allowPort0 = false): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError(`${opt} needs rtp://HOST:PORT, got "${v}"`);
  }
  if (u.protocol !== 'rtp:') throw new UsageError(`${opt} needs an rtp:// URL, got "${v}"`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0) throw new UsageError(`${opt}: "${u.hostname}" is not a numeric IP address`);
  const port = Number(u.port);
  if (!u.port || !Number.isInteger(port) || port < (allowPort0 ? 0 : 1) || port > 65535) throw new UsageError(`${opt}: missing or bad port in "${v}"`);
  return { host, port };
}

function exitFor(e: unknown): number {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return EXIT.NO_DAEMON;
  if (code === 'EBUSY' || code === 'EINVAL' || code === 'ENODEV') return EXIT.REFUSED;
  if (code === 'ETIMEDOUT') return EXIT.TIMEDOUT;
  return EXIT.ERROR;
}

export async function cmdBridge(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        send: { type: 'string' },
        receive: { type: 'string' },
        sdp: { type: 'string' },
        rate: { type: 'string', short: 'r' },
        channels: { type: 'string', short: 'c' },
        bitrate: { type: 'string' },
        'payload-type': { type: 'string' },
        jitter: { type: 'string' },
        'jitter-ms': { type: 'string' },
        'jitter-min-ms': { type: 'string' },
        'jitter-max-ms': { type: 'string' },
        'no-drift': { type: 'boolean' },
        'idle-exit': { type: 'string' },
        latency: { type: 'string' },
        wait: { type: 'string' },
        clock: { type: 'boolean' },
        'socket-dir': { type: 'string', short: 's' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    return usage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(BRIDGE_HELP + '\n');
    return EXIT.OK;
  }
  const say = (m: string): void => {
    if (!values.quiet) process.stderr.write(`audioloop bridge: ${m}\n`);
  };
  try {
    if (positionals[0] === undefined) throw new UsageError('missing loop instance N');
    const instance = intArg(positionals[0], 'instance N', 0, 15)!;
    if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
    const send = values.send as string | undefined;
    const receive = values.receive as string | undefined;
    if ((send === undefined) === (receive === undefined)) throw new UsageError('give exactly one of --send rtp://HOST:PORT or --receive rtp://BIND:PORT');
    const rate = intArg(values.rate as string | undefined, '--rate', 8000, 192000) ?? 48000;
    const channels = (intArg(values.channels as string | undefined, '--channels', 1, 2) ?? 2) as 1 | 2;
    const pt = intArg(values['payload-type'] as string | undefined, '--payload-type', DYNAMIC_PT_MIN, DYNAMIC_PT_MAX);
    const socketDir = values['socket-dir'] as string | undefined;
    const latencyMs = intArg(values.latency as string | undefined, '--latency', 1, 1000);
    const { waitMs } = waitArg(values.wait as string | undefined);
    const sendOnly = ['sdp', 'bitrate'].filter((k) => values[k] !== undefined);
    const recvOnly = ['jitter', 'jitter-ms', 'jitter-min-ms', 'jitter-max-ms', 'no-drift', 'idle-exit'].filter((k) => values[k] !== undefined);
    if (send !== undefined && recvOnly.length) throw new UsageError(`--${recvOnly[0]} is a --receive option`);
    if (receive !== undefined && sendOnly.length) throw new UsageError(`--${sendOnly[0]} is a --send option`);

    if (send !== undefined) {
      const { host, port } = parseRtpUrl(send, '--send');
      const bitrate = intArg(values.bitrate as string | undefined, '--bitrate', 6000, 510000);
      const sender = new RtpSender({
        instance, host, port, rate, channels,
        ...(bitrate !== undefined ? { bitrate } : {}),
        ...(pt !== undefined ? { payloadType: pt } : {}),
        ...(values.sdp ? { sdpFile: values.sdp as string } : {}),
        ...(socketDir ? { socketDir } : {}),
        ...(latencyMs !== undefined ? { latencyMs } : {}),
        ...(waitMs !== undefined ? { waitMs } : {}),
        ...(values.clock ? { clock: true } : {}),
      });
      return await runWithSignals(sender, async () => {
        await sender.open();
        say(`${sender.server!.node}: sending Opus RTP to ${send} (ssrc ${sender.ssrc})${values.sdp ? `, SDP in ${values.sdp}` : ''}; ${values.clock ? 'silence until a client plays (--clock)' : 'waiting for a client to play'}...`);
        sender.server!.once('start', (c: { app?: string }) => say(`client ${c.app ?? '?'} started`));
        const why = await sender.run();
        const s = sender.stats;
        say(`${why === 'reset' ? 'client went away (ECONNRESET)' : 'stopped'}: sent ${s.packets} packets (${(s.frames / 48000).toFixed(2)} s)`);
        return EXIT.OK;
      });
    }

    const { host, port } = parseRtpUrl(receive!, '--receive', true);
    const mode = (values.jitter as string | undefined) ?? 'adaptive';
    if (mode !== 'adaptive' && mode !== 'fixed') throw new UsageError('--jitter must be adaptive or fixed');
    const minMs = intArg(values['jitter-min-ms'] as string | undefined, '--jitter-min-ms', 0, 5000) ?? 20;
    const maxMs = intArg(values['jitter-max-ms'] as string | undefined, '--jitter-max-ms', 1, 5000) ?? 400;
    const targetMs = intArg(values['jitter-ms'] as string | undefined, '--jitter-ms', 0, 5000) ?? 60;
    if (!(minMs <= targetMs && targetMs <= maxMs)) throw new UsageError(`need --jitter-min-ms <= --jitter-ms <= --jitter-max-ms (${minMs} <= ${targetMs} <= ${maxMs})`);
    const idle = intArg(values['idle-exit'] as string | undefined, '--idle-exit', 1, 86400);
    const receiver = new RtpReceiver({
      instance, bind: host, port, rate, channels,
      jitter: mode === 'fixed' ? { mode, targetMs, minMs: targetMs, maxMs: targetMs } : { mode, targetMs, minMs, maxMs },
      drift: !values['no-drift'],
      ...(pt !== undefined ? { payloadType: pt } : {}),
      ...(idle !== undefined ? { idleExitMs: idle * 1000 } : {}),
      ...(socketDir ? { socketDir } : {}),
      ...(latencyMs !== undefined ? { latencyMs } : {}),
      ...(waitMs !== undefined ? { waitMs } : {}),
      ...(values.clock ? { clock: true } : {}),
    });
    return await runWithSignals(receiver, async () => {
      await receiver.open();
      say(`${receiver.server!.node}: receiving Opus RTP on ${host}:${receiver.boundPort}; ${values.clock ? 'played to nobody until a client records (--clock)' : 'waiting for a client to record'}...`);
      receiver.server!.once('start', (c: { app?: string }) => say(`client ${c.app ?? '?'} started`));
      const why: ReceiverEnd = await receiver.run();
      const m = receiver.metrics();
      const text = { reset: 'client went away (ECONNRESET)', idle: 'no packets: idle exit', stopped: 'stopped' }[why];
      say(`${text}: ${m.packets} packets, ${m.lost} lost, ${m.late} late, ${m.plcFrames} concealed, jitter ${m.jitterMs.toFixed(1)} ms, drift ${m.driftPpm.toFixed(0)} ppm`);
      return EXIT.OK;
    });
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    process.stderr.write(`audioloop bridge: ${(e as Error).message}\n`);
    return exitFor(e);
  }
}

async function runWithSignals(b: { stop(): void }, body: () => Promise<number>): Promise<number> {
  const onSig = (): void => b.stop();
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    return await body();
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
  }
}

function usage(msg: string): number {
  process.stderr.write(`audioloop: ${msg}\nRun "audioloop bridge --help".\n`);
  return EXIT.USAGE;
}
