// Worker processes killed with SIGKILL lose no job and apply no effect twice (effect and ack
// commit in one transaction).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, test } from 'node:test';
import { child, count, delay, freshDb, waitFor } from './helpers.js';

describe('crash safety', () => {
  test('kill -9 of worker processes mid-job loses nothing and applies nothing twice', async () => {
    const { db, path } = freshDb();
    const kids = new Set<ChildProcess>();
    try {
      db.conn.exec('CREATE TABLE effects (job_id INTEGER NOT NULL, pid INTEGER NOT NULL)');
      const q = db.queue('crash', { maxAttempts: 1000 });
      const N = 300;
      const ids = q.enqueueMany(Array.from({ length: N }, (_, i) => ({ i }))).map((h) => h.id);
      const spawn = async () => {
        const c = child('crash-worker', path, 'crash');
        kids.add(c);
        let out = '';
        c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        c.on('exit', () => kids.delete(c));
        await waitFor(() => out.includes('ready'), 30_000, 'child ready');
        return c;
      };
      for (let i = 0; i < 3; i++) await spawn();
      let kills = 0;
      const deadline = Date.now() + 90_000;
      while (count(db, 'effects') < N && Date.now() < deadline) {
        await delay(30 + Math.floor(Math.random() * 70));
        if (count(db, 'effects') >= N) break;
        const victim = [...kids][Math.floor(Math.random() * kids.size)];
        if (victim !== undefined && kills < 12) {
          victim.kill('SIGKILL');
          kids.delete(victim);
          kills++;
          await spawn();
        }
      }
      await waitFor(() => count(db, 'effects') >= N, 60_000, 'all effects');
      await waitFor(() => q.stats().pending + q.stats().running + q.stats().scheduled === 0, 30_000, 'queue drained');
      assert.ok(kills >= 3, `${kills} kills`);
      assert.equal(count(db, 'effects'), N, 'each effect once');
      assert.equal(db.value('SELECT COUNT(DISTINCT job_id) FROM effects'), N);
      const got = JSON.parse(db.value('SELECT json_group_array(job_id) FROM (SELECT job_id FROM effects ORDER BY job_id)') as string) as number[];
      assert.deepEqual(got, ids);
      assert.equal(q.stats().dead, 0);
      assert.equal(db.value('PRAGMA integrity_check'), 'ok');
      console.log(`crash test: ${kills} workers killed with SIGKILL, ${N} jobs, each effect applied once`);
    } finally {
      for (const c of kids) c.kill('SIGKILL');
      db.close();
    }
  });
});
