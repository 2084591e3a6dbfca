-- The archive table, for accounts that do not deploy template.yaml's Glue table (the stack
-- creates the same table as ArchiveEventsTable). Replace <bucket> and, if changed, the prefix.
-- Partitions are projected from the key layout events/year=YYYY/month=MM/day=DD/hour=HH/:
-- no crawler, no MSCK REPAIR TABLE, new hours are queryable as soon as they are written.
-- Each line is one event as the producer sent it plus the `_pipeline` field the processor adds.
-- The archive is at least once: see queries.sql for removing duplicates by event_id.

CREATE DATABASE IF NOT EXISTS experimently;

CREATE EXTERNAL TABLE IF NOT EXISTS experimently.events (
  event_id string,
  event_type string,
  user_id string,
  `timestamp` string COMMENT 'ISO-8601 with offset: from_iso8601_timestamp()',
  experiment_id string,
  variant_id string,
  value double,
  session_id string,
  properties string COMMENT 'JSON object as text: json_extract()',
  schema_version string,
  `_pipeline` struct<
    attributions: array<struct<
      experiment_id: string,
      variant_id: string,
      time_since_assignment_seconds: double>>,
    kinesis: struct<
      shard_id: string,
      sequence_number: string,
      partition_key: string,
      approximate_arrival_timestamp: double>,
    archive_schema_version: string>
)
PARTITIONED BY (year int, month int, day int, hour int)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://<bucket>/events/'
TBLPROPERTIES (
  'classification' = 'json',
  'projection.enabled' = 'true',
  'projection.year.type' = 'integer',
  'projection.year.range' = '2024,2100',
  'projection.month.type' = 'integer',
  'projection.month.range' = '1,12',
  'projection.month.digits' = '2',
  'projection.day.type' = 'integer',
  'projection.day.range' = '1,31',
  'projection.day.digits' = '2',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' =
    's3://<bucket>/events/year=${year}/month=${month}/day=${day}/hour=${hour}/'
);
