// The body of a waiting thread: its own connection, blocked in honker_wait, posting epochs.
// It never runs its own event loop: it parks on a shared Atomics word while nobody waits.
import { parentPort, workerData } from 'node:worker_threads';
import { openConn } from './driver.js';
import { codeOf, mapError } from './errors.js';

interface Data {
  path: string;
  ext: string;
  words: Int32Array;
  hasCancel: boolean;
  keyBase: string;
}

const STATE = 0;
const SEQ = 1;
const { path, ext, words, hasCancel, keyBase } = workerData as Data;
const port = parentPort!;

function run(): void {
  let conn;
  try {
    conn = openConn(path, false);
    conn.exec('PRAGMA busy_timeout = 5000');
    conn.loadExtension(ext);
  } catch (e) {
    port.postMessage({ t: 'x', code: codeOf(e) ?? 'wake.start', message: `waiting thread cannot open ${path}: ${(e as Error).message}` });
    return;
  }
  const epochStmt = conn.stmt('SELECT honker_epoch()');
  // With cancel keys a wait can run long (an abort stops it within ms); without, bounded waits.
  const waitStmt = hasCancel ? conn.stmt('SELECT honker_wait(CAST(? AS INTEGER), CAST(? AS INTEGER), ?)') : conn.stmt('SELECT honker_wait(CAST(? AS INTEGER), CAST(? AS INTEGER))');
  const timeoutMs = hasCancel ? 60_000 : 200;
  let current = Number(epochStmt.value());
  port.postMessage({ t: 'e', e: current });
  for (;;) {
    // Number the next wait before reading the state: the main thread reads SEQ after it writes
    // STATE, so a cancel it sends always names a wait that is running or about to start.
    const seq = Atomics.add(words, SEQ, 1) + 1;
    const state = Atomics.load(words, STATE);
    if (state === 2) break;
    if (state === 0) {
      Atomics.wait(words, STATE, 0);
      continue;
    }
    try {
      const e = Number(hasCancel ? waitStmt.value(current, timeoutMs, `${keyBase}-${seq}`) : waitStmt.value(current, timeoutMs));
      if (e !== current) {
        current = e;
        port.postMessage({ t: 'e', e });
      }
    } catch (err) {
      const code = codeOf(err);
      if (code === 'wait.cancelled') continue;
      port.postMessage({ t: 'x', code: code ?? 'wake.watcher_died', message: (mapError(err) as Error).message });
      // Do not spin on a persistent failure (a replaced file, a dead watcher): back off.
      Atomics.wait(words, STATE, 1, 100);
    }
  }
  conn.close();
}

run();
