{#- Searches of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    user_id,
    session_id,
    query,
    results_count
from {{ source('silver', 'shop_searches') }}
where {{ in_date_window('event_date') }}
