-- Sample queries over the event archive (Athena engine version 3, table experimently.events).
-- Always filter on the partition columns year/month/day(/hour): Athena then reads only those hours.
-- The column names `timestamp` and `_pipeline` must be written in double quotes.


-- 1. One day of events, each event once.
-- The archive is at least once: a batch that Lambda redelivers is archived again (an identical
-- retry rewrites the same object, but a redelivery with a different batch boundary writes another
-- object holding the same events). Every copy of an event has the same event_id and the same
-- event time, so its copies are in the same hour partition: keep one row per event_id.
SELECT event_id, event_type, user_id, from_iso8601_timestamp("timestamp") AS event_time,
       experiment_id, variant_id, value
FROM (
  SELECT e.*,
         ROW_NUMBER() OVER (
           PARTITION BY event_id
           ORDER BY length("_pipeline".kinesis.sequence_number), "_pipeline".kinesis.sequence_number
         ) AS copy_number
  FROM experimently.events AS e
  WHERE year = 2026 AND month = 11 AND day = 20
)
WHERE copy_number = 1
ORDER BY event_time
LIMIT 100;


-- 2. Conversion per variant of one experiment: of the users attributed to each variant, how many
-- made a purchase. Attribution is the processor's (the assignment service's variant, only events
-- after the assignment), read from _pipeline.attributions, not the variant_id the client sent.
WITH deduplicated AS (
  SELECT *
  FROM (
    SELECT e.*,
           ROW_NUMBER() OVER (
             PARTITION BY event_id
             ORDER BY length("_pipeline".kinesis.sequence_number), "_pipeline".kinesis.sequence_number
           ) AS copy_number
    FROM experimently.events AS e
    WHERE year = 2026 AND month = 11 AND day BETWEEN 1 AND 30
  )
  WHERE copy_number = 1
),
attributed AS (
  SELECT d.user_id, d.event_type, a.attributed_variant_id
  FROM deduplicated AS d
  CROSS JOIN UNNEST(d."_pipeline".attributions)
    AS a (attributed_experiment_id, attributed_variant_id, time_since_assignment_seconds)
  WHERE a.attributed_experiment_id = 'exp-checkout'
)
SELECT attributed_variant_id AS variant_id,
       COUNT(DISTINCT user_id) AS users,
       COUNT(DISTINCT IF(event_type = 'purchase', user_id)) AS converted_users,
       CAST(COUNT(DISTINCT IF(event_type = 'purchase', user_id)) AS double)
         / COUNT(DISTINCT user_id) AS conversion_rate
FROM attributed
GROUP BY attributed_variant_id
ORDER BY attributed_variant_id;


-- 3. How many extra copies the archive holds (redeliveries of a batch, and producers that sent
-- the same event_id twice): the lines that query 1 and 2 remove.
SELECT COUNT(*) AS lines,
       COUNT(DISTINCT event_id) AS events,
       COUNT(*) - COUNT(DISTINCT event_id) AS extra_copies
FROM experimently.events
WHERE year = 2026 AND month = 11 AND day = 20;
