{#- Purchase lines of the build's day window (all days without one); renames and types only. -#}
select
    event_id,
    event_type,
    event_time,
    event_date,
    event_hour,
    user_id,
    session_id,
    order_id,
    product_id,
    quantity,
    unit_price,
    currency,
    payment_method
from {{ source('silver', 'shop_purchases') }}
where {{ in_date_window('event_date') }}
