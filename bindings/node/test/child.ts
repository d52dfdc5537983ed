// Child processes of the multi-process tests, by role (argv[2]).
import { open, Worker } from '../src/index.js';
import { delay } from './helpers.js';

const [role, path, ...rest] = process.argv.slice(2);

async function main(): Promise<void> {
  if (role === 'open-fails') {
    // A fresh process whose very first open fails inside the extension's init: it must report
    // the typed error and exit normally (no crash when the failed connection closes).
    try {
      open(path!);
      process.stdout.write('opened\n');
    } catch (e) {
      process.stdout.write(`${(e as { code?: string }).code}\n`);
    }
    return;
  }
  const db = open(path!);
  switch (role) {
    case 'notify': {
      // notify <path> <channel> <n>: n notifications, each its own commit.
      const n = Number(rest[1]);
      for (let i = 0; i < n; i++) db.notify(rest[0]!, { i });
      break;
    }
    case 'enqueue': {
      const q = db.queue(rest[0]!);
      const h = q.enqueue({ from: 'child' });
      process.stdout.write(`${h.id}\n`);
      break;
    }
    case 'crash-worker': {
      // crash-worker <path> <queue>: applies each job's effect and ack in one transaction, slowly
      // enough to be killed mid-job; runs until killed.
      const q = db.queue(rest[0]!);
      const w = new Worker(
        q,
        async (job) => {
          await delay(20 + (job.id % 40));
          job.complete((tx) => {
            tx.run('INSERT INTO effects (job_id, pid) VALUES (CAST(? AS INTEGER), CAST(? AS INTEGER))', job.id, process.pid);
          });
        },
        { concurrency: 3, leaseMs: 400 },
      );
      w.on('error', () => {});
      process.stdout.write('ready\n');
      await new Promise(() => {});
      break;
    }
    case 'listen-then-exit': {
      // Listens until a notification arrives, then lets the event loop empty: the process must exit.
      const ac = new AbortController();
      process.stdout.write('listening\n');
      for await (const n of db.listen(rest[0]!, { signal: ac.signal })) {
        process.stdout.write(`got ${JSON.stringify(n.payload)}\n`);
        ac.abort();
      }
      db.close();
      return;
    }
    case 'close-while-waiting': {
      // A listener is waiting when the database closes: the waiting thread's wait must be
      // cancelled so the process can exit (it would otherwise sit out the thread's timeout).
      const it = db.listen(rest[0]!);
      const next = it.next().catch((e: { code?: string }) => e.code);
      await delay(100);
      db.close();
      process.stdout.write(`${await next}\n`);
      return;
    }
    case 'wake-listen': {
      // wake-listen <path> <channel> <n>: print the receive time of n notifications.
      const n = Number(rest[1]);
      const ac = new AbortController();
      let k = 0;
      process.stdout.write('ready\n');
      // Both sides read the wall clock at sub-ms resolution (comparable across processes).
      for await (const m of db.listen<{ t: number }>(rest[0]!, { signal: ac.signal })) {
        const now = performance.timeOrigin + performance.now();
        process.stdout.write(`${now - m.payload.t}\n`);
        if (++k === n) ac.abort();
      }
      break;
    }
    default:
      throw new Error(`unknown role ${role}`);
  }
  db.close();
}

main().then(
  () => {},
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
