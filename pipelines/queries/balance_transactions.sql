{{ config(
    primary_key='id',
    cursor='created',
    lag='3h',
    initial_value='2024-01-01',
    tags=['finance'],
    columns={'exchange_rate': 'double'},
    description='Every movement of funds through the balance: amount, fee and net in minor units.',
) }}
-- Sigma data arrives up to about three hours late: lag='3h' re-reads the last three hours on
-- every run, and merging on id keeps each transaction once.
select
    id,
    created,
    available_on,
    type,
    reporting_category,
    status,
    currency,
    amount,
    fee,
    net,
    exchange_rate,
    source_id,
    description
from balance_transactions
{% if is_incremental() %}
where created >= {{ cursor_start }}
  and created < {{ cursor_end }}
{% endif %}
