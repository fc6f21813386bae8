{#- The scratch schemas the lake sources are copied into (tidelake_delta plugin). -#}
{% macro lake_schemas() -%}
    {{ return(['lake_silver', 'lake_gold']) }}
{%- endmacro %}

{#- on-run-start: create them once, before dbt's threads load sources concurrently. -#}
{% macro create_lake_schemas() -%}
    {%- if execute -%}
        {%- for schema in lake_schemas() -%}
            {%- do run_query('create schema if not exists ' ~ adapter.quote(schema)) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- on-run-end: drop them, so the warehouse file holds only models, never a stale lake copy. -#}
{% macro drop_lake_schemas() -%}
    {%- if execute -%}
        {%- for schema in lake_schemas() -%}
            {%- do run_query('drop schema if exists ' ~ adapter.quote(schema) ~ ' cascade') -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
