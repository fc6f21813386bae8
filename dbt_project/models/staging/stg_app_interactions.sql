{#- App interactions of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    user_id,
    device_id,
    platform,
    app_version,
    screen
from {{ source('silver', 'app_interactions') }}
where {{ in_date_window('event_date') }}
