{{ config(unique_key='date', full_refresh=full_rebuild()) }}
{#- Sensor reading statistics per (UTC hour of event_time, device, metric). `date` is the
    incremental key: a windowed build replaces whole days. -#}
select
    date_trunc('hour', event_time) as hour,
    event_date as date,
    device_id,
    metric,
    min(value)::double as min_value,
    avg(value)::double as avg_value,
    max(value)::double as max_value,
    count(*)::bigint as readings
from {{ ref('stg_infra_sensor_readings') }}
group by all
