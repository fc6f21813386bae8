{{ config(unique_key='date', full_refresh=full_rebuild()) }}
{#- Events, late events and duplicates per (UTC day, topic, event_type), from gold/events_per_hour. -#}
select
    event_date as date,
    topic,
    event_type,
    sum(events)::bigint as events,
    sum(late_events)::bigint as late_events,
    sum(duplicates)::bigint as duplicates
from {{ ref('stg_events_per_hour') }}
group by all
