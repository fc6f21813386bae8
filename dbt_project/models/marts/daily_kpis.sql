{{ config(unique_key='date', full_refresh=full_rebuild()) }}
{#- Web-shop KPIs per UTC day of event_time. A day exists when any user topic has an event. -#}
with user_events as (
    select event_date, user_id from {{ ref('stg_shop_page_views') }}
    union all
    select event_date, user_id from {{ ref('stg_shop_clicks') }}
    union all
    select event_date, user_id from {{ ref('stg_shop_searches') }}
    union all
    select event_date, user_id from {{ ref('stg_shop_purchases') }}
    union all
    select event_date, user_id from {{ ref('stg_app_interactions') }}
),

session_events as (
    select event_date, session_id from {{ ref('stg_shop_page_views') }}
    union all
    select event_date, session_id from {{ ref('stg_shop_clicks') }}
    union all
    select event_date, session_id from {{ ref('stg_shop_searches') }}
    union all
    select event_date, session_id from {{ ref('stg_shop_purchases') }}
),

users as (
    select event_date, count(distinct user_id) as active_users
    from user_events
    group by event_date
),

sessions as (
    select event_date, count(distinct session_id) as sessions
    from session_events
    group by event_date
),

views as (
    select event_date, count(*) as page_views
    from {{ ref('stg_shop_page_views') }}
    group by event_date
),

carts as (
    select event_date, count(*) as add_to_carts
    from {{ ref('stg_shop_clicks') }}
    where event_type = 'add_to_cart'
    group by event_date
),

buys as (
    select event_date, count(*) as purchases, count(distinct order_id) as orders
    from {{ ref('stg_shop_purchases') }}
    group by event_date
),

kpis as (
    select
        u.event_date as date,
        u.active_users,
        coalesce(s.sessions, 0) as sessions,
        coalesce(v.page_views, 0) as page_views,
        coalesce(c.add_to_carts, 0) as add_to_carts,
        coalesce(b.purchases, 0) as purchases,
        coalesce(b.orders, 0) as orders
    from users as u
    left join sessions as s on s.event_date = u.event_date
    left join views as v on v.event_date = u.event_date
    left join carts as c on c.event_date = u.event_date
    left join buys as b on b.event_date = u.event_date
)

select
    date,
    active_users::bigint as active_users,
    sessions::bigint as sessions,
    page_views::bigint as page_views,
    add_to_carts::bigint as add_to_carts,
    purchases::bigint as purchases,
    orders::bigint as orders,
    case when sessions = 0 then 0.0 else orders / sessions end::double as conversion_rate
from kpis
