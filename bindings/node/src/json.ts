// Payloads are JSON values. The binding refuses what JSON.stringify would silently change
// (NaN, Infinity, undefined, integers past 2^53) with the extension's own code, payload.not_json.
import { ArgumentError, PayloadError } from './errors.js';

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const MAX_DEPTH = 64;

function check(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) throw new PayloadError('payload.not_json', `${v} is not a JSON number`);
      if (Number.isInteger(v) && !Number.isSafeInteger(v)) {
        throw new PayloadError('payload.not_json', `integer ${v} is beyond 2^53 and would lose precision`);
      }
      return;
    case 'object':
      if (v === null) return;
      if (depth >= MAX_DEPTH) throw new PayloadError('payload.not_json', `nested deeper than ${MAX_DEPTH} levels`);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) check(v[i], depth + 1);
        return;
      }
      if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return; // Date and friends
      for (const k in v) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined && typeof x !== 'function') check(x, depth + 1);
      }
      return;
    default:
      throw new PayloadError('payload.not_json', `a ${typeof v} is not a JSON value`);
  }
}

/** Refuse a payload JSON cannot carry exactly (without serialising it). */
export function checkPayload(payload: unknown): void {
  check(payload, 0);
}

/** Serialise a payload, refusing values JSON cannot carry exactly. */
export function encode(payload: unknown): string {
  check(payload, 0);
  try {
    return JSON.stringify(payload);
  } catch (e) {
    throw new PayloadError('payload.not_json', `payload cannot be serialised: ${(e as Error).message}`, { cause: e });
  }
}

/** Check an integer argument (ids, counts, milliseconds). */
export function int(name: string, v: unknown, min = Number.MIN_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new ArgumentError('arg.invalid', `${name} must be an integer${min > Number.MIN_SAFE_INTEGER ? ` >= ${min}` : ''}, got ${String(v)}`);
  }
  return v;
}

/** Check a non-empty string argument. */
export function str(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new ArgumentError('arg.invalid', `${name} must be a string, got ${typeof v}`);
  return v;
}

/** A time given as a Date or milliseconds since the Unix epoch. */
export function millis(name: string, v: unknown): number {
  if (v instanceof Date) return int(name, v.getTime());
  return int(name, v);
}
