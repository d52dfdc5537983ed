// honker for Node.js and Bun: notify/listen, durable queues, streams and cron on SQLite.
export { open, attach, Database } from './database.js';
export type { OpenOptions, AttachOptions, Notification, ListenOptions, Features, Info } from './database.js';
export { Queue, Job, JobHandle } from './queue.js';
export type { QueueOptions, EnqueueOptions, JobInfo, QueueStats, DeadLetter } from './queue.js';
export { Worker, UnrecoverableError } from './worker.js';
export type { WorkerOptions, Processor, WorkerEvents } from './worker.js';
export { Stream } from './stream.js';
export type { StreamEvent, SubscribedEvent, SubscribeOptions, ConsumerInfo } from './stream.js';
export { Cron, Scheduler } from './cron.js';
export type { ScheduleOptions, ScheduleInfo, Fire, SchedulerOptions } from './cron.js';
export { Lock } from './lock.js';
export {
  HonkerError,
  ArgumentError,
  PayloadError,
  QueueError,
  LeaseLostError,
  JobFailedError,
  StreamError,
  CronError,
  WaitError,
  WaitCancelledError,
  WaitTimeoutError,
  DatabaseError,
  WakeError,
  ExtensionError,
} from './errors.js';
export type { Json } from './json.js';
export { diagnostics } from './waiter.js';
export type { Diagnostics, WaitOutcome } from './waiter.js';
export { findExtension, MIN_EXTENSION_VERSION } from './extension.js';
export type { DriverKind } from './driver.js';
export { isBun } from './driver.js';
