{#- The day window of an incremental build, from the vars `min_date` / `max_date` (UTC dates,
    inclusive). Both unset: no window, every model rebuilds in full. One set: a one-day window. -#}

{% macro _window_date(name) -%}
    {%- set raw = var(name, none) -%}
    {%- if raw is none or (raw | string | trim) in ('', 'None', 'null') -%}
        {{ return(none) }}
    {%- endif -%}
    {#- Parsing both validates the value (no SQL from vars) and normalises it. -#}
    {{ return(modules.datetime.datetime.strptime(raw | string | trim, '%Y-%m-%d').date()) }}
{%- endmacro %}

{% macro date_window() -%}
    {%- set lo = _window_date('min_date') -%}
    {%- set hi = _window_date('max_date') -%}
    {%- if lo is none and hi is none -%}{{ return(none) }}{%- endif -%}
    {%- set lo = lo if lo is not none else hi -%}
    {%- set hi = hi if hi is not none else lo -%}
    {%- if lo > hi -%}
        {{ exceptions.raise_compiler_error("min_date " ~ lo ~ " is after max_date " ~ hi) }}
    {%- endif -%}
    {{ return((lo, hi)) }}
{%- endmacro %}

{#- True when no window is given: incremental marts then rebuild in full (config full_refresh). -#}
{% macro full_rebuild() -%}
    {{ return(date_window() is none) }}
{%- endmacro %}

{#- SQL predicate keeping the rows of the window's days (`true` without a window). -#}
{% macro in_date_window(column) -%}
    {%- set w = date_window() -%}
    {%- if w is none -%}true{%- else -%}{{ column }} between date '{{ w[0] }}' and date '{{ w[1] }}'{%- endif -%}
{%- endmacro %}
