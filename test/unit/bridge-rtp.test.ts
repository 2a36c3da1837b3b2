import assert from 'node:assert/strict';
import { OpusEncoder } from '@discordjs/opus';
import { decodeRtp, encodeRtp, opusPacketSamples, opusPlcPacket, seqDiff, tsDiff, Unwrapper, RtpError } from '../../src/bridge/rtp';
import { formatOpusSdp, parseOpusSdp, SdpError } from '../../src/bridge/sdp';
import { formatMetricsLine, parseMetricsLine, type BridgeMetrics } from '../../src/bridge/metrics';
import { parseRtpUrl } from '../../src/bridge/cli';

describe('bridge/rtp: packets', () => {
  it('encodes the RFC 3550 fixed header bit-exactly', () => {
    const payload = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const b = encodeRtp({ payloadType: 111, marker: true, seq: 0xfffe, timestamp: 0xfffffff0, ssrc: 0x12345678, payload });
    assert.deepEqual([...b.subarray(0, 12)], [0x80, 0x80 | 111, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xf0, 0x12, 0x34, 0x56, 0x78]);
    assert.deepEqual(b.subarray(12), payload);
  });

  it('round-trips header fields and CSRCs', () => {
    const p = { payloadType: 96, marker: false, seq: 1234, timestamp: 4000000000, ssrc: 0xcafebabe, csrcs: [1, 0xffffffff], payload: Buffer.from('opus') };
    const d = decodeRtp(encodeRtp(p));
    assert.equal(d.payloadType, 96);
    assert.equal(d.marker, false);
    assert.equal(d.seq, 1234);
    assert.equal(d.timestamp, 4000000000);
    assert.equal(d.ssrc, 0xcafebabe);
    assert.deepEqual(d.csrcs, [1, 0xffffffff]);
    assert.equal(d.payload.toString(), 'opus');
  });

  it('skips a header extension and strips padding', () => {
    const head = Buffer.from([0xb0, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]); // V=2 P=1 X=1
    const ext = Buffer.from([0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one 32-bit word
    const payload = Buffer.from([9, 8, 7]);
    const pad = Buffer.from([0, 0, 3]);
    const d = decodeRtp(Buffer.concat([head, ext, payload, pad]));
    assert.deepEqual([...d.payload], [9, 8, 7]);
    assert.equal(d.seq, 1);
    assert.equal(d.timestamp, 2);
    assert.equal(d.ssrc, 3);
  });

  it('rejects what is not RTP v2 or is truncated', () => {
    assert.throws(() => decodeRtp(Buffer.alloc(11)), RtpError);
    const v1 = encodeRtp({ payloadType: 96, marker: false, seq: 0, timestamp: 0, ssrc: 0, payload: Buffer.alloc(2) });
    v1[0] = 0x40;
    assert.throws(() => decodeRtp(v1), /version 1/);
    const cc = encodeRtp({ payloadType: 96, marker: false, seq: 0, timestamp: 0, ssrc: 0, payload: Buffer.alloc(0) });
    cc[0] = 0x82; // claims 2 CSRCs that are not there
    assert.throws(() => decodeRtp(cc), /CSRC/);
    const pad = encodeRtp({ payloadType: 96, marker: false, seq: 0, timestamp: 0, ssrc: 0, payload: Buffer.from([1, 200]) });
    pad[0]! |= 0x20; // padding length 200 > packet
    assert.throws(() => decodeRtp(pad), /padding/);
  });

  it('serial arithmetic across the wrap of seq (16 bit) and timestamp (32 bit)', () => {
    assert.equal(seqDiff(0, 0xffff), 1);
    assert.equal(seqDiff(0xffff, 0), -1);
    assert.equal(seqDiff(5, 0xfff0), 21);
    assert.equal(tsDiff(100, 0xffffff00), 356);
    assert.equal(tsDiff(0xffffff00, 100), -356);
    const u = new Unwrapper(16);
    assert.deepEqual([0xfffe, 0xffff, 0, 0xfffd, 1, 2].map((s) => u.unwrap(s)), [0xfffe, 0xffff, 0x10000, 0xfffd, 0x10001, 0x10002]);
    const t = new Unwrapper(32);
    assert.deepEqual([0xfffffc40, 0x200, 0xfffffc40].map((s) => t.unwrap(s)), [0xfffffc40, 0x100000200, 0xfffffc40]);
  });

  it('Opus packet durations from the TOC (RFC 6716 3.1)', () => {
    assert.equal(opusPacketSamples(Buffer.from([(31 << 3) | 0])), 960); // CELT FB 20 ms, 1 frame
    assert.equal(opusPacketSamples(Buffer.from([(1 << 3) | 1, 0])), 1920); // SILK NB 20 ms, 2 frames
    assert.equal(opusPacketSamples(Buffer.from([(3 << 3) | 3, 2])), 5760); // SILK 60 ms x 2
    assert.equal(opusPacketSamples(Buffer.from([(16 << 3) | 0])), 120); // CELT 2.5 ms
    assert.equal(opusPacketSamples(Buffer.from([(3 << 3) | 3, 3])), 0); // 180 ms: invalid
    assert.equal(opusPacketSamples(Buffer.alloc(0)), 0);
  });

  it('a TOC-only packet makes libopus conceal exactly one frame (PLC)', () => {
    const codec = new OpusEncoder(48000, 2);
    const pcm = Buffer.alloc(960 * 4);
    for (let i = 0; i < 960; i++) {
      const v = Math.round(8000 * Math.sin((2 * Math.PI * 1000 * i) / 48000));
      pcm.writeInt16LE(v, i * 4);
      pcm.writeInt16LE(v, i * 4 + 2);
    }
    const pkt = codec.encode(pcm);
    assert.equal(opusPacketSamples(pkt), 960);
    assert.equal(codec.decode(pkt).length, 960 * 4);
    const plc = codec.decode(opusPlcPacket(pkt[0]!));
    assert.equal(plc.length, 960 * 4, 'one 20 ms frame of concealment');
    let energy = 0;
    for (let i = 0; i < 960 * 2; i++) energy += Math.abs(plc.readInt16LE(i * 2));
    assert.ok(energy / 1920 > 100, `the concealment continues the signal (mean |x| ${energy / 1920})`);
  });
});

describe('bridge/sdp', () => {
  it('writes an SDP with the RFC 7587 rtpmap and reads it back', () => {
    const text = formatOpusSdp({ address: '127.0.0.1', port: 5004, payloadType: 97, channels: 2, ptimeMs: 20, name: 'audioloop0', ssrc: 42, sessionId: 7 });
    const lines = text.split('\r\n');
    assert.equal(lines[0], 'v=0');
    assert.ok(lines.includes('c=IN IP4 127.0.0.1'));
    assert.ok(lines.includes('m=audio 5004 RTP/AVP 97'));
    assert.ok(lines.includes('a=rtpmap:97 opus/48000/2'));
    assert.ok(lines.includes('a=fmtp:97 stereo=1; sprop-stereo=1'));
    assert.ok(lines.includes('a=ptime:20'));
    assert.ok(text.endsWith('\r\n'));
    assert.deepEqual(parseOpusSdp(text), { address: '127.0.0.1', port: 5004, payloadType: 97, channels: 2, ptimeMs: 20, name: 'audioloop0', ssrc: 42 });
  });

  it('mono keeps opus/48000/2 in the rtpmap and says stereo=0; IPv6 uses IP6', () => {
    const text = formatOpusSdp({ address: '::1', port: 6000, payloadType: 96, channels: 1, ptimeMs: 20 });
    assert.match(text, /a=rtpmap:96 opus\/48000\/2\r\n/);
    assert.match(text, /a=fmtp:96 stereo=0; sprop-stereo=0/);
    assert.match(text, /c=IN IP6 ::1/);
    assert.equal(parseOpusSdp(text).channels, 1);
  });

  it('parses an SDP as ffmpeg writes it (-f rtp)', () => {
    const ff = 'v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\na=tool:libavformat 59.27.100\nm=audio 5006 RTP/AVP 97\nb=AS:96\na=rtpmap:97 opus/48000/2\na=fmtp:97 sprop-stereo=1\n';
    assert.deepEqual(parseOpusSdp(ff), { address: '127.0.0.1', port: 5006, payloadType: 97, channels: 2, ptimeMs: 20, name: 'No Name' });
  });

  it('refuses what is not an Opus SDP', () => {
    assert.throws(() => parseOpusSdp('m=audio 1 RTP/AVP 0\n'), SdpError);
    assert.throws(() => parseOpusSdp('v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n'), /opus/);
    assert.throws(() => formatOpusSdp({ address: 'localhost', port: 1, payloadType: 96, channels: 2, ptimeMs: 20 }), /IP address/);
  });
});

describe('bridge: metrics line and rtp:// URLs', () => {
  const m: BridgeMetrics = {
    role: 'receive', peer: '127.0.0.1:4000', packets: 10, bytes: 1000, lost: 1, lossRate: 1 / 11, late: 0, duplicates: 2, reordered: 1,
    jitterMs: 1.23456, driftPpm: -12.5, ratePpm: -20, fillMs: 60, targetMs: 60, plcFrames: 1, underruns: 0,
  };

  it('METRICS lines round-trip (numbers rounded to 3 decimals)', () => {
    const line = formatMetricsLine(3, m);
    assert.ok(line.startsWith('METRICS instance=3 {'));
    assert.ok(line.endsWith('}\n'));
    const back = parseMetricsLine(line.trimEnd());
    assert.ok(back);
    assert.equal(back.instance, 3);
    assert.equal(back.metrics.jitterMs, 1.235);
    assert.equal(back.metrics.lost, 1);
    assert.equal(parseMetricsLine('METRICS instance=x {}'), null);
    assert.equal(parseMetricsLine('METRICS instance=1 [1]'), null);
    assert.equal(parseMetricsLine('METRICS instance=1 {bad'), null);
  });

  it('parses rtp://HOST:PORT, IPv6 in brackets; refuses names and bad ports', () => {
    assert.deepEqual(parseRtpUrl('rtp://127.0.0.1:5004', '--send'), { host: '127.0.0.1', port: 5004 });
    assert.deepEqual(parseRtpUrl('rtp://[::1]:6000', '--send'), { host: '::1', port: 6000 });
    assert.throws(() => parseRtpUrl('rtp://localhost:5004', '--send'), /numeric/);
    assert.throws(() => parseRtpUrl('udp://127.0.0.1:5004', '--send'), /rtp:\/\//);
    assert.throws(() => parseRtpUrl('rtp://127.0.0.1', '--send'), /port/);
    assert.throws(() => parseRtpUrl('rtp://127.0.0.1:0', '--send'), /port/);
    assert.deepEqual(parseRtpUrl('rtp://127.0.0.1:0', '--receive', true), { host: '127.0.0.1', port: 0 });
  });
});
