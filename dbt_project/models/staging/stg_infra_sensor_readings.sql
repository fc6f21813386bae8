{#- Sensor readings of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    device_id,
    site,
    metric,
    value,
    unit
from {{ source('silver', 'infra_sensor_readings') }}
where {{ in_date_window('event_date') }}
