{#- Page views of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    user_id,
    session_id,
    product_id,
    page,
    referrer,
    device
from {{ source('silver', 'shop_page_views') }}
where {{ in_date_window('event_date') }}
