{#- Clicks and add-to-cart events of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    user_id,
    session_id,
    product_id,
    element
from {{ source('silver', 'shop_clicks') }}
where {{ in_date_window('event_date') }}
