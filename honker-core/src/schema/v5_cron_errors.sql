-- Schema version 5: a cron schedule remembers why a tick paused it.
--
-- honker_schedules.last_error  TEXT  `code: message` of the queue's refusal of the schedule's
--                                    job (payload over the queue's limit, ...) when a tick
--                                    paused the schedule for it; NULL otherwise. Resuming or
--                                    registering the schedule again clears it (and a register
--                                    also lifts the pause such an error caused).
ALTER TABLE honker_schedules ADD COLUMN last_error TEXT;
