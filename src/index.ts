/**
 * audioloop as a library. A program that wants to be the server end of a
 * loop needs only `openServer`:
 *
 *     import { openServer } from 'audioloop';
 *     const srv = await openServer(0, { mode: 'read', format: 's16le', rate: 48000, channels: 2 });
 *     srv.readable.pipe(somewhere);         // 'error' with code ECONNRESET when the client went away
 *
 * The daemon, backends and helpers are exported for tools built on top.
 */
export { openServer, LoopServer, type OpenServerOptions, type ClientStart } from './client';
export { fetchStatus } from './control';
export { Daemon, type DaemonOptions, type DaemonStatus, type ReloadResult } from './daemon';
export type { LoopState, LoopStatus } from './loop';
export { makeError, errnoError, isErrorWithCode, AudioloopError, SystemError } from './errors';
export { SAMPLE_FORMATS, FORMAT_INFO, frameBytes, bytesPerSecond, validateFormat, describeFormat, type SampleFormat, type PcmFormat } from './format';
export { loadConfig, parseConfig, findConfig, configSearchPath, ConfigError, DEFAULT_CONFIG, type AudioloopConfig, type ConfigLocation } from './config';
export { WavFileWriter, readWavFile, openWavStream, parseWavHeader, wavHeader } from './wav';
export { PipeWireBackend } from './backend/pipewire';
export type { Backend, Endpoint, EndpointOptions, EndpointStats, ClientInfo } from './backend/types';
export { createLogger, type Logger } from './log';
export { PROTOCOL_VERSION, defaultSocketDir, loopSocketPath, controlSocketPath } from './protocol';
