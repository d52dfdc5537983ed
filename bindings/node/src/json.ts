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

// What JSON.stringify can silently change shows in its output as `null` (NaN, Infinity,
// undefined or a function in an array) or as a long digit run or an exponent (an integer past
// 2^53): only then is the value walked to find out. A cycle or a BigInt makes it throw.
const SUSPECT = /null|\d{16}|[eE]\+/;

/** Serialise a payload, refusing values JSON cannot carry exactly (payload.not_json). */
export function encode(payload: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (e) {
    throw new PayloadError('payload.not_json', `payload cannot be serialised: ${(e as Error).message}`, { cause: e });
  }
  if (text === undefined) throw new PayloadError('payload.not_json', `a ${typeof payload} is not a JSON value`);
  if (SUSPECT.test(text)) check(payload, 0);
  return text;
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
