/**
 * SDP (RFC 8866) for one Opus RTP stream (RFC 7587 section 7), enough for
 * `ffmpeg -protocol_whitelist file,udp,rtp -i FILE.sdp` to receive what
 * `audioloop bridge --send` sends. The rtpmap is always opus/48000/2 (RFC 7587
 * section 7: the channel count in the rtpmap is always 2); `stereo` and
 * `sprop-stereo` in the fmtp tell whether the sender encodes stereo.
 */
import { AudioloopError } from '../errors';
import { isIP } from 'node:net';

export interface OpusSdp {
  /** destination address of the stream (where a receiver listens) */
  address: string;
  port: number;
  payloadType: number;
  /** channels the sender encodes (1 or 2) */
  channels: 1 | 2;
  /** packet duration in ms */
  ptimeMs: number;
  /** session name (s=) */
  name?: string;
  /** origin address (o=), default: the destination */
  origin?: string;
  sessionId?: number;
  ssrc?: number;
}

export class SdpError extends AudioloopError {
  constructor(message: string) {
    super('EINVAL', message);
  }
}

function addrType(a: string): 'IP4' | 'IP6' {
  const v = isIP(a);
  if (v === 0) throw new SdpError(`"${a}" is not an IP address`);
  return v === 6 ? 'IP6' : 'IP4';
}

export function formatOpusSdp(s: OpusSdp): string {
  const at = addrType(s.address);
  const origin = s.origin ?? s.address;
  const sid = s.sessionId ?? Math.floor(Date.now() / 1000);
  const stereo = s.channels === 2 ? 1 : 0;
  const lines = [
    'v=0',
    `o=- ${sid} 1 IN ${addrType(origin)} ${origin}`,
    `s=${(s.name ?? 'audioloop').replace(/[\r\n]/g, ' ')}`,
    `c=IN ${at} ${s.address}`,
    't=0 0',
    `m=audio ${s.port} RTP/AVP ${s.payloadType}`,
    `a=rtpmap:${s.payloadType} opus/48000/2`,
    `a=fmtp:${s.payloadType} stereo=${stereo}; sprop-stereo=${stereo}`,
    `a=ptime:${s.ptimeMs}`,
  ];
  if (s.ssrc !== undefined) lines.push(`a=ssrc:${s.ssrc >>> 0} cname:audioloop`);
  lines.push('a=sendonly');
  return lines.join('\r\n') + '\r\n';
}

/** Reads back the fields of an Opus SDP (the first audio m= line with an opus rtpmap). */
export function parseOpusSdp(text: string): OpusSdp {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (lines[0] !== 'v=0') throw new SdpError('an SDP starts with "v=0"');
  let conn: string | null = null;
  let media: { port: number; pts: number[] } | null = null;
  let mediaConn: string | null = null;
  const rtpmap = new Map<number, string>();
  const fmtp = new Map<number, Map<string, string>>();
  let ptime: number | null = null;
  let name: string | undefined;
  let ssrc: number | undefined;
  for (const l of lines) {
    const m = /^([a-z])=(.*)$/.exec(l);
    if (!m) throw new SdpError(`malformed SDP line "${l.slice(0, 60)}"`);
    const [, type, value] = m as unknown as [string, string, string];
    if (type === 's') name = value;
    else if (type === 'c') {
      const c = /^IN IP[46] ([^/\s]+)/.exec(value);
      if (!c) throw new SdpError(`bad c= line "${value}"`);
      if (media) mediaConn = c[1]!;
      else conn = c[1]!;
    } else if (type === 'm') {
      if (media) break; // only the first media section
      const mm = /^audio (\d+) RTP\/AVP ([\d ]+)$/.exec(value);
      if (!mm) continue;
      media = { port: Number(mm[1]), pts: mm[2]!.trim().split(/\s+/).map(Number) };
    } else if (type === 'a' && media) {
      let a = /^rtpmap:(\d+) (.+)$/.exec(value);
      if (a) rtpmap.set(Number(a[1]), a[2]!.toLowerCase());
      a = /^fmtp:(\d+) (.+)$/.exec(value);
      if (a) {
        const kv = new Map<string, string>();
        for (const part of a[2]!.split(';')) {
          const [k, v] = part.trim().split('=');
          if (k) kv.set(k.trim(), (v ?? '').trim());
        }
        fmtp.set(Number(a[1]), kv);
      }
      a = /^ptime:(\d+)/.exec(value);
      if (a) ptime = Number(a[1]);
      a = /^ssrc:(\d+)/.exec(value);
      if (a) ssrc = Number(a[1]);
    }
  }
  if (!media) throw new SdpError('no "m=audio PORT RTP/AVP ..." line');
  const pt = media.pts.find((p) => rtpmap.get(p)?.startsWith('opus/48000'));
  if (pt === undefined) throw new SdpError('no opus/48000 rtpmap for the audio stream');
  const address = mediaConn ?? conn;
  if (!address) throw new SdpError('no c= line');
  const stereo = fmtp.get(pt)?.get('sprop-stereo') ?? fmtp.get(pt)?.get('stereo') ?? '0';
  const out: OpusSdp = { address, port: media.port, payloadType: pt, channels: stereo === '1' ? 2 : 1, ptimeMs: ptime ?? 20 };
  if (name !== undefined) out.name = name;
  if (ssrc !== undefined) out.ssrc = ssrc;
  return out;
}
