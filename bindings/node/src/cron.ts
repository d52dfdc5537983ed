// Cron: schedule management, ticks, and the Scheduler runner that sleeps until the next fire.
import type { Database } from './database.js';
import { ArgumentError } from './errors.js';
import type { Json } from './json.js';
import { encode, int, millis, str } from './json.js';
import { onAbort, sleep } from './waiter.js';

/** Options of a schedule. */
export interface ScheduleOptions {
  /** The queue its jobs go to. */
  queue: string;
  /** The payload of each job (default null). */
  payload?: unknown;
  /** IANA time zone (default UTC). */
  tz?: string;
  priority?: number;
  maxAttempts?: number;
  misfire?: 'skip' | 'once' | 'all';
  misfireCap?: number;
  graceMs?: number;
  overlap?: 'allow' | 'skip';
  maxRuns?: number;
  endAt?: Date | number;
}

/** A schedule as `list()` reports it. */
export interface ScheduleInfo {
  name: string;
  cron: string;
  tz: string;
  queue: string;
  payload: Json;
  paused: boolean;
  nextFireAt: number | null;
  runs: number;
  lastFireAt: number | null;
  lastJobId: number | null;
  lastError: string | null;
  upcoming: number[];
  options: Record<string, Json>;
}

/** One boundary a tick fired. */
export interface Fire {
  schedule: string;
  fireAt: number;
  jobId: number | null;
}

const OPTION_KEYS: Record<string, string> = {
  tz: 'tz',
  priority: 'priority',
  maxAttempts: 'max_attempts',
  misfire: 'misfire',
  misfireCap: 'misfire_cap',
  graceMs: 'grace_ms',
  overlap: 'overlap',
  maxRuns: 'max_runs',
  endAt: 'end_at_ms',
};

export class Cron {
  /** @internal */
  constructor(private readonly db: Database) {}

  /** Register or update schedule `name`; its next fire time (ms), or null when it has none left. */
  schedule(name: string, expression: string, options: ScheduleOptions): number | null {
    str('name', name);
    str('expression', expression);
    if (options === null || typeof options !== 'object') throw new ArgumentError('arg.invalid', 'schedule() needs options with a queue');
    const queue = str('queue', options.queue);
    const payload = encode(options.payload ?? null);
    const o: Record<string, Json> = {};
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined || k === 'queue' || k === 'payload') continue;
      const key = OPTION_KEYS[k];
      if (key === undefined) throw new ArgumentError('cron.bad_option', `unknown option "${k}"; known options: queue, payload, ${Object.keys(OPTION_KEYS).join(', ')}`);
      o[key] = k === 'endAt' ? millis(k, v) : (v as Json);
    }
    return (this.db.value('SELECT honker_schedule(?, ?, ?, ?, ?)', name, expression, queue, payload, JSON.stringify(o)) as number | null) ?? null;
  }

  /** Remove schedule `name`; true if it existed. */
  unschedule(name: string): boolean {
    return this.db.value('SELECT honker_unschedule(?)', str('name', name)) === 1;
  }

  pause(name: string): void {
    this.db.value('SELECT honker_schedule_pause(?)', str('name', name));
  }

  resume(name: string): void {
    this.db.value('SELECT honker_schedule_resume(?)', str('name', name));
  }

  /** Every schedule, each with its next `upcoming` fire times (default 5). */
  list(options: { upcoming?: number } = {}): ScheduleInfo[] {
    const n = int('upcoming', options.upcoming ?? 5, 0);
    return this.db.rows<Record<string, Json>>('SELECT honker_schedules(CAST(? AS INTEGER))', n).map((s) => {
      const { name, cron, tz, queue, payload, paused, next_fire_ms, runs, last_fire_ms, last_job_id, last_error, upcoming, ...rest } = s;
      return {
        name: name as string,
        cron: cron as string,
        tz: tz as string,
        queue: queue as string,
        payload: payload ?? null,
        paused: paused as boolean,
        nextFireAt: (next_fire_ms as number | null) ?? null,
        runs: runs as number,
        lastFireAt: (last_fire_ms as number | null) ?? null,
        lastJobId: (last_job_id as number | null) ?? null,
        lastError: (last_error as string | null) ?? null,
        upcoming: upcoming as number[],
        options: rest,
      };
    });
  }

  /** The next `n` fire times of `expression` after `after` (default now), in zone `tz` (default UTC). */
  next(expression: string, options: { after?: Date | number; tz?: string; n?: number } = {}): number[] {
    const after = options.after === undefined ? Date.now() : millis('after', options.after);
    const n = int('n', options.n ?? 1, 0);
    const t = this.db.value('SELECT honker_cron_next(?, CAST(? AS INTEGER), ?, CAST(? AS INTEGER))', str('expression', expression), after, options.tz ?? 'UTC', n);
    return JSON.parse(t as string) as number[];
  }

  /** Fire every due boundary now (or as of `now`); what fired. Safe to call from any number of processes. */
  tick(now?: Date | number): Fire[] {
    const rows = now === undefined
      ? this.db.rows<{ schedule: string; fire_ms: number; job_id: number | null }>('SELECT honker_cron_tick()')
      : this.db.rows<{ schedule: string; fire_ms: number; job_id: number | null }>('SELECT honker_cron_tick(CAST(? AS INTEGER))', millis('now', now));
    return rows.map((r) => ({ schedule: r.schedule, fireAt: r.fire_ms, jobId: r.job_id }));
  }

  /** When the earliest unpaused schedule fires next (ms), or null. */
  nextFire(): number | null {
    let min: number | null = null;
    for (const s of this.list({ upcoming: 0 })) {
      if (!s.paused && s.nextFireAt !== null && (min === null || s.nextFireAt < min)) min = s.nextFireAt;
    }
    return min;
  }
}

/** Options of a Scheduler. */
export interface SchedulerOptions {
  /** Aborting it stops the scheduler. */
  signal?: AbortSignal;
  /** Called with each boundary fired. */
  onFire?: (fire: Fire) => void;
  /** Called with an error of a tick (default: console.error); the scheduler keeps going. */
  onError?: (error: unknown) => void;
}

/**
 * Runs `honker_cron_tick()` and sleeps until the next fire, or until a schedule changes in any
 * process. Run one in every process you like: fires are deduplicated in the database (no leader).
 */
export class Scheduler {
  private readonly stop = new AbortController();
  private readonly done: Promise<void>;

  constructor(
    private readonly db: Database,
    private readonly options: SchedulerOptions = {},
  ) {
    const outer = options.signal;
    if (outer?.aborted === true) this.stop.abort();
    const off = onAbort(outer, () => this.stop.abort());
    this.done = this.loop().finally(off);
  }

  /** Resolves when the scheduler has stopped. */
  get stopped(): Promise<void> {
    return this.done;
  }

  /** Stop the scheduler. */
  close(): Promise<void> {
    this.stop.abort();
    return this.done;
  }

  private async loop(): Promise<void> {
    const { signal } = this.stop;
    let emptyAfterDeadline = false;
    while (!signal.aborted) {
      let seen: number;
      let next: number | null;
      try {
        seen = this.db.epoch();
        const fires = this.db.cron.tick();
        for (const f of fires) this.options.onFire?.(f);
        next = this.db.cron.nextFire();
        emptyAfterDeadline = emptyAfterDeadline && fires.length === 0;
      } catch (e) {
        (this.options.onError ?? ((x: unknown) => console.error('honker scheduler:', x)))(e);
        await sleep(250, signal);
        continue;
      }
      const now = Date.now();
      const deadline = next === null ? undefined : Math.max(next, now + (emptyAfterDeadline ? 25 : 1));
      const outcome = await this.db.waitPast(seen, deadline, signal);
      emptyAfterDeadline = outcome === 'timeout';
    }
  }
}
