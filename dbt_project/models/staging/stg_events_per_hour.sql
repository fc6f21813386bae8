{#- gold/events_per_hour rows of the build's day window (all days without one). -#}
select
    topic,
    event_type,
    window_start,
    events,
    late_events,
    duplicates,
    event_date,
    event_hour
from {{ source('gold', 'events_per_hour') }}
where {{ in_date_window('event_date') }}
