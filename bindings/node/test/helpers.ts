// Shared test helpers: fresh database files, condition waits, child processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { open, type Database } from '../src/index.js';

export const here = dirname(fileURLToPath(import.meta.url));
export const runtime = typeof (process.versions as Record<string, string | undefined>)['bun'] === 'string' ? 'bun' : 'node';

/** A path for a fresh database file. */
export function freshPath(): string {
  return join(mkdtempSync(join(tmpdir(), `honker-${runtime}-`)), 'test.db');
}

/** A fresh database, closed when the test ends (call the returned close). */
export function freshDb(): { db: Database; path: string } {
  const path = freshPath();
  return { db: open(path), path };
}

/** Wait until `cond()` is truthy, checking every 5 ms, failing after `timeoutMs`. */
export async function waitFor(cond: () => unknown, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Start `test/child.js <role> ...args` under the same runtime. */
export function child(role: string, ...args: string[]): ChildProcess {
  return spawn(process.execPath, [join(here, 'child.js'), role, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Run a child to completion; its stdout. */
export function runChild(role: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = child(role, ...args);
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code, sig) => (code === 0 ? resolve(out) : reject(new Error(`child ${role} exited ${code ?? sig}: ${out}`))));
  });
}

/** Count rows of a table. */
export function count(db: Database, table: string, where = '1'): number {
  return db.value(`SELECT COUNT(*) FROM ${table} WHERE ${where}`) as number;
}

/** Force a garbage collection in either runtime. */
export function gc(): void {
  const bun = (globalThis as { Bun?: { gc(full: boolean): void } }).Bun;
  if (bun !== undefined) return bun.gc(true);
  nodeGc ??= (() => {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  })();
  nodeGc();
}

let nodeGc: (() => void) | undefined;
