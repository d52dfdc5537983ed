// Typed errors: every `honker: <code>: <message>` from the extension becomes a HonkerError
// subclass with that stable `code`; SQLITE_BUSY and other driver errors pass through untouched.

/** Every error raised by honker itself. `code` is stable and identical in every language binding. */
export class HonkerError extends Error {
  /** The stable code, such as `payload.not_json` or `queue.lease_lost`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A bad argument or an unknown option (`arg.*`, `options.*`, `*.unknown_option`, `*.bad_option`). */
export class ArgumentError extends HonkerError {}
/** A payload that is not JSON every reader can parse, or is too large (`payload.*`). */
export class PayloadError extends HonkerError {}
/** A queue error (`queue.*`). */
export class QueueError extends HonkerError {}
/** The job's lease was lost: it expired and may have been reclaimed (`queue.lease_lost`). */
export class LeaseLostError extends QueueError {}
/** The awaited job died instead of producing a result (`queue.job_dead`). */
export class JobFailedError extends QueueError {}
/** A pub/sub or stream error (`notify.*`, `stream.*`). */
export class StreamError extends HonkerError {}
/** A cron error (`cron.*`). */
export class CronError extends HonkerError {}
/** A blocking wait refused or stopped (`wait.*`). */
export class WaitError extends HonkerError {}
/** A wait stopped by its cancel key or AbortSignal (`wait.cancelled`). */
export class WaitCancelledError extends WaitError {}
/** A wait that reached its timeout (`wait.timeout`). */
export class WaitTimeoutError extends WaitError {}
/** The database file or schema (`db.*`, `schema.*`, `setup.*`). */
export class DatabaseError extends HonkerError {}
/** The wake watcher (`wake.*`). */
export class WakeError extends HonkerError {}
/** The extension could not be found, loaded, or is too old (`ext.*`). */
export class ExtensionError extends HonkerError {}

type Ctor = new (code: string, message: string, options?: { cause?: unknown }) => HonkerError;

const BY_CODE: Record<string, Ctor> = {
  'queue.lease_lost': LeaseLostError,
  'queue.job_dead': JobFailedError,
  'queue.unknown_option': ArgumentError,
  'queue.bad_option': ArgumentError,
  'cron.bad_option': ArgumentError,
  'wait.cancelled': WaitCancelledError,
  'wait.timeout': WaitTimeoutError,
};

const BY_AREA: Record<string, Ctor> = {
  arg: ArgumentError,
  options: ArgumentError,
  payload: PayloadError,
  queue: QueueError,
  notify: StreamError,
  stream: StreamError,
  cron: CronError,
  wait: WaitError,
  db: DatabaseError,
  schema: DatabaseError,
  setup: DatabaseError,
  wake: WakeError,
  ext: ExtensionError,
};

/** The typed error for `code`. */
export function honkerError(code: string, message: string, cause?: unknown): HonkerError {
  const C = BY_CODE[code] ?? BY_AREA[code.slice(0, code.indexOf('.'))] ?? HonkerError;
  return new C(code, message, cause === undefined ? undefined : { cause });
}

const PREFIX = /^honker: ([a-z0-9_]+\.[a-z0-9_]+): /;

/** Map a driver error carrying the `honker: <code>:` prefix to its typed error; others unchanged. */
export function mapError(e: unknown): unknown {
  if (e instanceof HonkerError || !(e instanceof Error)) return e;
  const m = PREFIX.exec(e.message);
  if (m === null) return e;
  return honkerError(m[1]!, e.message.slice(m[0].length), e);
}

/** The extension's code of a driver error, or undefined. */
export function codeOf(e: unknown): string | undefined {
  if (e instanceof HonkerError) return e.code;
  if (e instanceof Error) return PREFIX.exec(e.message)?.[1];
  return undefined;
}

/** A wait inside an open transaction would hold a snapshot that hides the commit it waits for. */
export function inTransaction(): WaitError {
  return new WaitError('wait.in_transaction', 'cannot wait inside an open transaction: its snapshot would hide the commit waited for');
}
