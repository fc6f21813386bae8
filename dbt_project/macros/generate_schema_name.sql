{#- A model's +schema is its DuckDB schema as written (`marts`, not `main_marts`): the API and the
    dashboard read `marts.daily_kpis` by name. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
