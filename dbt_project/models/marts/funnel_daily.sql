{{ config(unique_key='date', full_refresh=full_rebuild()) }}
{#- The view → add-to-cart → purchase funnel of web sessions per UTC day. Strict: a session counts
    at a step only if it also reached every earlier step that day, so each rate is in [0, 1]. -#}
with viewed as (
    select distinct event_date, session_id from {{ ref('stg_shop_page_views') }}
),

carted as (
    select distinct event_date, session_id
    from {{ ref('stg_shop_clicks') }}
    where event_type = 'add_to_cart'
),

bought as (
    select distinct event_date, session_id from {{ ref('stg_shop_purchases') }}
),

steps as (
    select
        v.event_date,
        c.session_id is not null as reached_cart,
        c.session_id is not null and b.session_id is not null as reached_purchase
    from viewed as v
    left join carted as c on c.event_date = v.event_date and c.session_id = v.session_id
    left join bought as b on b.event_date = v.event_date and b.session_id = v.session_id
),

counts as (
    select
        event_date as date,
        count(*) as sessions_with_view,
        count(*) filter (where reached_cart) as sessions_with_add_to_cart,
        count(*) filter (where reached_purchase) as sessions_with_purchase
    from steps
    group by event_date
)

select
    date,
    sessions_with_view::bigint as sessions_with_view,
    sessions_with_add_to_cart::bigint as sessions_with_add_to_cart,
    sessions_with_purchase::bigint as sessions_with_purchase,
    (sessions_with_add_to_cart / sessions_with_view)::double as view_to_cart_rate,
    case
        when sessions_with_add_to_cart = 0 then 0.0
        else sessions_with_purchase / sessions_with_add_to_cart
    end::double as cart_to_purchase_rate,
    (sessions_with_purchase / sessions_with_view)::double as view_to_purchase_rate
from counts
